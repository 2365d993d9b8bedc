"""The warm-up step: one `POST /v1/cache/warm` batch per rollover in Warming."""

from __future__ import annotations

from cachefleet_operator.adapters.nodes import NodeError
from cachefleet_operator.api.v1alpha1.modelversion import Warmup
from cachefleet_operator.domain.events import EventSpec
from cachefleet_operator.domain.lifecycle.warmup import warm_request, warmed
from cachefleet_operator.services.context import Service
from cachefleet_operator.services.lifecycle.step import FleetPass

__all__ = ["WarmStep"]

_NO_WARM = Warmup(top_n=1)


class WarmStep(Service):
    """Replays the next batch of the old namespace's most-hit prompts into the new one."""

    async def run(self, fleet: FleetPass) -> None:
        """One batch per rollover in Warming (done when nothing is left or it is switched off);
        a batch the node refuses for good ends the warm-up with a `WarmupFailed` Event."""
        step, urls = fleet.step, fleet.urls
        by_name = {mv.metadata.name: mv for mv in fleet.model_versions}
        now = self._clock()
        for record in [r for r in step.lifecycle.rollovers if r.phase == "Warming"]:
            mv = by_name.get(record.model_version)
            settings = mv.spec.rollover.warm if mv is not None else None
            request = warm_request(record, settings) if settings is not None else None
            if settings is None or request is None:  # switched off meanwhile, or nothing left
                step.apply(
                    warmed(
                        step.lifecycle,
                        record.model_version,
                        None,
                        settings=_NO_WARM if settings is None else settings,
                        now=self._clock(),
                    )
                )
                continue
            if not urls:
                step.retry("NoNodeEndpoint")
                continue
            try:
                result = await self._nodes.warm(
                    urls[0],
                    request,
                    api_key=fleet.api_key,
                    time_limit=request.limit / settings.rate_per_second + 30.0,
                )
            except NodeError as error:
                if error.status is not None and 400 <= error.status < 500 and error.status != 429:
                    # Refused for good (e.g. 409 upstream_key_missing): the rollover is done
                    # without the rest of the warm-up.
                    step.lifecycle = warmed(
                        step.lifecycle, record.model_version, None, settings=settings, now=now
                    ).lifecycle
                    step.completed = True
                    step.events.append(
                        EventSpec(
                            "Warning",
                            "WarmupFailed",
                            f"{record.model_version}: warm-up of {record.to_namespace} "
                            f"stopped: {error}",
                        )
                    )
                    continue
                step.note(record, f"warm-up batch failed (retrying): {error}")
                step.retry("WarmupBatchFailed")
                continue
            step.apply(
                warmed(
                    step.lifecycle,
                    record.model_version,
                    result,
                    settings=settings,
                    now=self._clock(),
                )
            )
            step.soon(0.05)

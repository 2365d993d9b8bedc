"""Retired namespaces: retained read-only for `retainFor` (at most `retainPrevious` per
ModelVersion; Flush: due at once), then purged from every tier when due."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from cachefleet_operator.api.v1alpha1 import (
    ActiveNamespace,
    ModelVersion,
    RetainedNamespace,
    RolloverProgress,
)
from cachefleet_operator.api.v1alpha1.modelversion import RolloverSettings
from cachefleet_operator.domain.lifecycle.modelversion import retain_until, rollover_settings
from cachefleet_operator.domain.lifecycle.state import Lifecycle, awaits_purge

__all__ = ["bound_retention", "due_purges", "purged", "retain", "retire"]


def retire(
    entry: ActiveNamespace, *, policy: str, settings: RolloverSettings, now: datetime
) -> RetainedNamespace:
    """The active namespace `entry`, retired now: retained until its retention ends."""
    return RetainedNamespace(
        cache_namespace=entry.cache_namespace,
        model_version=entry.model_version,
        version=entry.version,
        prompt_template_hash=entry.prompt_template_hash,
        epoch=entry.epoch,
        retired_at=now,
        purge_after=retain_until(settings, policy, now),
    )


def retain(
    retained: Iterable[RetainedNamespace], entry: RetainedNamespace
) -> list[RetainedNamespace]:
    """`retained` with `entry` last, in place of an earlier record of its namespace."""
    return [e for e in retained if e.cache_namespace != entry.cache_namespace] + [entry]


def _protected(
    rollovers: Iterable[RolloverProgress], retained: Iterable[RetainedNamespace]
) -> set[str]:
    """Namespaces a purge must not touch: switch targets (except those awaiting the purge of
    their target) and warm-up sources in flight."""
    retained_names = {e.cache_namespace for e in retained}
    names: set[str] = set()
    for record in rollovers:
        if not awaits_purge(record, retained_names):
            names.add(record.to_namespace)
        if record.phase == "Warming" and record.from_namespace:
            names.add(record.from_namespace)
    return names


def bound_retention(
    retained: Sequence[RetainedNamespace],
    model_versions: Mapping[str, ModelVersion],
    rollovers: Sequence[RolloverProgress],
    now: datetime,
) -> list[RetainedNamespace]:
    """At most `retainPrevious` retained namespaces per ModelVersion: the oldest beyond it are
    due for purging now. Rollback targets in flight are not counted, nor are namespaces that
    are already due (flushed): a flush never shortens the retention of another namespace."""
    protected = _protected(rollovers, retained)
    bounded: list[RetainedNamespace] = []
    kept: dict[str, int] = {}
    for entry in sorted(retained, key=lambda e: e.retired_at, reverse=True):
        if entry.cache_namespace in protected or entry.purge_after <= now:
            bounded.append(entry)
            continue
        count = kept.get(entry.model_version, 0)
        limit = rollover_settings(model_versions, entry.model_version).retain_previous
        if count >= limit and entry.purge_after > now:
            entry = entry.model_copy(update={"purge_after": now})
        kept[entry.model_version] = count + 1
        bounded.append(entry)
    return sorted(bounded, key=lambda e: (e.retired_at, e.cache_namespace))


def due_purges(lifecycle: Lifecycle, now: datetime) -> list[RetainedNamespace]:
    """Retained namespaces whose retention is over, oldest first (never an active one, a
    switch target or a warm-up source)."""
    protected = _protected(lifecycle.rollovers, lifecycle.retained) | {
        a.cache_namespace for a in lifecycle.active
    }
    due = [
        e for e in lifecycle.retained if e.purge_after <= now and e.cache_namespace not in protected
    ]
    return sorted(due, key=lambda e: (e.retired_at, e.cache_namespace))


def purged(lifecycle: Lifecycle, namespace: str) -> Lifecycle:
    """The namespace is gone from every tier: no longer retained."""
    retained = tuple(e for e in lifecycle.retained if e.cache_namespace != namespace)
    return replace(lifecycle, retained=retained)

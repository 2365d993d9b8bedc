"""The node's real decision path for the quality harness: a `CacheEngine` over table vectors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cachefleet_bench.vectors import TableEmbedder
from cachefleet_node.config import GuardsConfig, NamespaceConfig, NodeConfig, VerifierConfig
from cachefleet_node.core.guards import GUARD_NAMES
from cachefleet_node.core.planning import LookupPlan, plan_request
from cachefleet_node.core.request import decode_json_object
from cachefleet_node.engine import CacheEngine
from cachefleet_node.memory import configured_budget
from cachefleet_node.metrics import NodeMetrics
from cachefleet_node.tiers.entry_store import LocalEntryStore

__all__ = [
    "NO_VERIFIER",
    "SYSTEM",
    "Bench",
    "enabled_guards",
    "guards_config",
    "namespace",
]

SYSTEM = "You are the assistant of a bank and travel app. Answer the user's request."
MODEL = "gpt-4o-mini"
#: The verifier off: the settings compared with the peers before it existed.
NO_VERIFIER = VerifierConfig(enabled=False)


def _body(text: str, system: str = SYSTEM) -> bytes:
    return json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
            "temperature": 0,
        }
    ).encode()


def _completion(answer: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }


def namespace(
    threshold: float,
    guards: GuardsConfig,
    name: str = "bench",
    lexical_weight: float = 0.0,
    verifier: VerifierConfig = NO_VERIFIER,
) -> NamespaceConfig:
    """A namespace at one setting (threshold, guards, lexical weight, verifier)."""
    return NamespaceConfig(
        name=name,
        similarity_threshold=threshold,
        min_threshold=min(0.5, threshold),
        guards=guards,
        lexical_weight=lexical_weight,
        verifier=verifier,
    )


def guards_config(enabled: Sequence[str]) -> GuardsConfig:
    """The guards setting with exactly `enabled` on."""
    return GuardsConfig(**{name: name in enabled for name in GUARD_NAMES})


def enabled_guards(guards: GuardsConfig) -> tuple[str, ...]:
    """The names of the guards a setting switches on."""
    return tuple(name for name in GUARD_NAMES if getattr(guards, name))


class Bench:
    """A real `CacheEngine` (embedded store, in-process ANN) over table-backed vectors."""

    def __init__(self, embedder: TableEmbedder, data_dir: Path, ns: NamespaceConfig) -> None:
        config = NodeConfig(data_dir=str(data_dir), namespaces=[ns])
        self.engine = CacheEngine(
            config,
            embedder=embedder,
            store=LocalEntryStore(data_dir / "entries.sqlite3"),
            vectors=None,
            metrics=NodeMetrics(),
            memory_budget=configured_budget(config.l1.max_bytes, config.l1.memory_fraction),
        )
        self.labels: dict[str, str] = {}  # entry id -> answer label

    def plan(
        self, text: str, ns: NamespaceConfig | None = None, system: str = SYSTEM
    ) -> LookupPlan:
        """The plan the proxy would build for this prompt (`system`: the system prompt, part
        of the partition)."""
        body = decode_json_object(_body(text, system))
        _, plan = plan_request(self.engine.router, {}, body, "default")
        return plan if ns is None else dataclasses.replace(plan, ns=ns)

    async def store(self, text: str, label: str, vector: Any = None, system: str = SYSTEM) -> None:
        """Write an answer through every tier, as a miss would."""
        plan = self.plan(text, system=system)
        await self.engine.remember(plan, _completion(label), vector)
        self.labels[plan.keys.exact] = label

    async def lookup(
        self, text: str, ns: NamespaceConfig, system: str = SYSTEM
    ) -> tuple[str | None, Any]:
        """(served label or None, outcome) through `CacheEngine.lookup`."""
        outcome = await self.engine.lookup(self.plan(text, ns, system))
        if outcome.hit and outcome.entry is not None:
            return self.labels.get(outcome.entry.entry_id), outcome
        return None, outcome

    async def close(self) -> None:
        """Release the store."""
        await self.engine.close()

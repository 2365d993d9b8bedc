"""`python -m cachefleet_bench COMMAND`: the node's benchmarks and training harnesses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cachefleet_bench import (
    chaos,
    embedded_durable,
    filter_sweep,
    index_sweep,
    latency,
    lexicon,
    memory,
    partitions,
    quality,
    scale,
    train_verifier,
)

__all__ = ["main"]

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, Command] = {
    "quality": (
        "semantic-correctness harness (CLINC150, Quora pairs, adversarial pairs, peers)",
        quality.add_arguments,
        quality.main,
    ),
    "latency": (
        "latency of the node's request path, alone and under concurrency",
        latency.add_arguments,
        latency.main,
    ),
    "train-verifier": (
        "train the verifier head on shippable data and choose its operating point",
        train_verifier.add_arguments,
        train_verifier.main,
    ),
    "memory": (
        "process RSS of the in-process tiers against their byte budget",
        memory.add_arguments,
        memory.main,
    ),
    "chaos": (
        "fault run: Redis, Milvus and the upstream broken under concurrent clients",
        chaos.add_arguments,
        chaos.main,
    ),
    "scale": (
        "how lookups, inserts, memory and restarts grow with entries, beside GPTCache and RedisVL",
        scale.add_arguments,
        scale.main,
    ),
    "partitions": (
        "many namespaces in Milvus: one collection with a partition key, or one per namespace",
        partitions.add_arguments,
        partitions.main,
    ),
    "index-sweep": (
        "Milvus vector index and search parameters: build time, recall and latency",
        index_sweep.add_arguments,
        index_sweep.main,
    ),
    "filter-sweep": (
        "Milvus search filter cost: the node's filter, fewer terms, none, scalar indexes",
        filter_sweep.add_arguments,
        filter_sweep.main,
    ),
    "embedded-durable": (
        "embedded durable tier candidates beside Milvus Lite: inserts, search, restart, RSS",
        embedded_durable.add_arguments,
        embedded_durable.main,
    ),
    "lexicon": (
        "build (or --check) the verifier's WordNet lexicon",
        lexicon.add_arguments,
        lexicon.main,
    ),
}


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m cachefleet_bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (summary, add_arguments, _) in COMMANDS.items():
        add_arguments(commands.add_parser(name, help=summary, description=summary))
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())

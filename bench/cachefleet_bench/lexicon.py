"""Build the verifier's synonym lexicon from WordNet 3.0: `make lexicon` (`--check` in lint).

Reads the WordNet database as Debian's `wordnet-base` package installs it
(`/usr/share/wordnet`, or `--wordnet DIR`) and writes `core/data/wordnet-lexicon.json.gz`:

- `synsets`: single-word lemma → the ids of its most frequent senses (at most
  `SENSES_PER_POS` per part of speech), kept only for senses shared with another lemma, so
  two words are synonyms when their lists intersect ("buy" / "purchase", "kid" / "child");
- `antonyms`: pairs of lemmas WordNet marks as opposites ("male" / "female");
- `exceptions`: irregular forms → lemma ("children" → "child", "bought" → "buy");
- `words`: every single-word lemma (a word WordNet knows is not a typo).

WordNet 3.0 Copyright 2006 by Princeton University; its licence permits redistribution with
the notice kept (`core/data/WORDNET-LICENSE`). The output is deterministic (sorted keys,
gzip without a timestamp), so `--check` can compare it byte for byte.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

from cachefleet_bench import NODE_DATA

__all__ = ["add_arguments", "build", "main"]

DEFAULT_WORDNET = Path("/usr/share/wordnet")
OUTPUT = NODE_DATA / "wordnet-lexicon.json.gz"
SENSES_PER_POS = 3  # the most frequent senses only: rare senses make spurious synonyms
_POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}


def _single_word(lemma: str) -> bool:
    return lemma.isalpha() and len(lemma) > 1


def _index(wordnet: Path) -> dict[str, list[tuple[str, int]]]:
    """lemma -> [(pos, synset offset)] of its first senses, most frequent first."""
    senses: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, pos in _POS.items():
        for line in (wordnet / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or not line.strip():
                continue  # licence header
            fields = line.split()
            lemma = fields[0].lower()
            if not _single_word(lemma):
                continue
            synset_count = int(fields[2])
            offsets = [int(x) for x in fields[-synset_count:]][:SENSES_PER_POS]
            senses[lemma].extend((pos, offset) for offset in offsets)
    return senses


def _antonyms(wordnet: Path, kept: dict[str, set[tuple[str, int]]]) -> set[tuple[str, str]]:
    """Lemma pairs with an antonym pointer between two of their kept senses."""
    words_of: dict[tuple[str, int], list[str]] = {}
    pointers: list[tuple[tuple[str, int], int, tuple[str, int], int]] = []
    for name, pos in _POS.items():
        for line in (wordnet / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or not line.strip():
                continue
            fields = line.split(" | ")[0].split()
            offset = int(fields[0])
            count = int(fields[3], 16)
            words = [fields[4 + 2 * i].lower() for i in range(count)]
            words_of[(pos, offset)] = words
            at = 4 + 2 * count
            for i in range(int(fields[at])):
                symbol, to_offset, to_pos, numbers = fields[at + 1 + 4 * i : at + 5 + 4 * i]
                if symbol != "!":
                    continue
                to_pos = "a" if to_pos == "s" else to_pos
                pointers.append(
                    (
                        (pos, offset),
                        int(numbers[:2], 16),
                        (to_pos, int(to_offset)),
                        int(numbers[2:], 16),
                    )
                )
    pairs: set[tuple[str, str]] = set()
    for source, source_word, target, target_word in pointers:
        if target not in words_of or not source_word or not target_word:
            continue
        left_word = words_of[source][source_word - 1]
        right_word = words_of[target][target_word - 1]
        if source in kept.get(left_word, ()) and target in kept.get(right_word, ()):
            pairs.add((min(left_word, right_word), max(left_word, right_word)))
    return pairs


def _exceptions(wordnet: Path, lemmas: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in _POS:
        path = wordnet / f"{name}.exc"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="latin-1").splitlines():
            fields = line.split()
            if len(fields) >= 2 and _single_word(fields[0]) and fields[1] in lemmas:
                found.setdefault(fields[0], fields[1])
    return found


def build(wordnet: Path) -> bytes:
    """The gzip-compressed lexicon document."""
    senses = _index(wordnet)
    members: dict[tuple[str, int], int] = defaultdict(int)
    for entries in senses.values():
        for entry in set(entries):
            members[entry] += 1
    shared = sorted(entry for entry, count in members.items() if count > 1)
    ids = {entry: i for i, entry in enumerate(shared)}
    synsets = {
        lemma: sorted({ids[entry] for entry in entries if entry in ids})
        for lemma, entries in senses.items()
        if any(entry in ids for entry in entries)
    }
    kept = {lemma: set(entries) for lemma, entries in senses.items()}
    document = {
        "source": "WordNet 3.0 (Princeton University), Debian wordnet-base",
        "senses_per_pos": SENSES_PER_POS,
        "synsets": dict(sorted(synsets.items())),
        "antonyms": sorted([list(pair) for pair in _antonyms(wordnet, kept)]),
        "exceptions": dict(sorted(_exceptions(wordnet, set(senses)).items())),
        "words": sorted(senses),
    }
    raw = json.dumps(document, separators=(",", ":"), sort_keys=False).encode()
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0) as handle:
        handle.write(raw)
    return buffer.getvalue()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `lexicon`."""
    parser.add_argument("--wordnet", type=Path, default=DEFAULT_WORDNET)
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")


def main(args: argparse.Namespace) -> int:
    """Write (or `--check`) the lexicon."""
    if not (args.wordnet / "index.noun").is_file():
        print(f"WordNet not found at {args.wordnet}: apt-get install wordnet-base", file=sys.stderr)
        return 2
    data = build(args.wordnet)
    if args.check:
        if not OUTPUT.is_file() or OUTPUT.read_bytes() != data:
            print(f"{OUTPUT} is stale: run `make lexicon`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT} ({len(data) // 1024} KiB)")
    return 0

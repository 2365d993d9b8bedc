"""Byte sizes written as Kubernetes quantities (`256Mi`, `4G`, `1073741824`)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

__all__ = ["mebibytes", "to_bytes"]

_SUFFIXES = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?")


def to_bytes(size: int | str) -> int:
    """Bytes in a size such as `256Mi`, `1.5G` or `1048576` (rounded up to a whole byte)."""
    if isinstance(size, int):
        return size
    match = _SIZE.fullmatch(size)
    if match is None:
        raise ValueError(f"not a byte size: {size!r} (expected e.g. 256Mi, 4Gi or 1073741824)")
    return math.ceil(Fraction(match.group(1)) * _SUFFIXES[match.group(2) or ""])


def mebibytes(size_bytes: float) -> str:
    """A size as a whole number of mebibytes, rounded up: `320Mi`."""
    return f"{math.ceil(size_bytes / 2**20)}Mi"

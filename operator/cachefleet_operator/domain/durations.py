"""Durations as the API writes them (`90s`, `15m`, `1h30m`), parsed and formatted."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds in `text`: a number of seconds, or parts such as `1h30m`, `15m`, `250ms`."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip()
        try:
            seconds = float(value)
        except ValueError:
            parts = _PART.findall(value)
            if not parts or "".join(n + u for n, u in parts) != value:
                raise ValueError(
                    f"invalid duration {text!r}: use seconds or parts such as 90s, 15m, 1h30m"
                ) from None
            seconds = sum(int(number) * _UNITS[unit] for number, unit in parts)
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """`15m`, `1h30m`, `45s` (whole seconds; `0s` for less than one)."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(
        f"{value}{unit}" for value, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if value
    )
    return text or "0s"

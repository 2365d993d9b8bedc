"""Threshold calibration from labelled or verified samples (pure, no I/O).

A *sample* is the best semantic candidate one request had (after the guards): its cosine
similarity and whether serving it would have been right. With `requests` lookups observed,
a threshold `t` serves every sample with similarity >= t, so

    hit ratio(t)  = #samples >= t / requests
    error rate(t) = #wrong samples >= t / requests       (wrong answers per request)
    false-hit rate(t) = #wrong samples >= t / #samples >= t

`choose_threshold` picks the lowest threshold (the most hits) whose error rate meets the
target; the offline command and the quality harness use it on labelled data. The
`OnlineCalibrator` does the same over a sliding window of verified samples (shadow-mode
would-be hits checked against the upstream's own answer) and only speaks once it holds
enough of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Calibration", "OnlineCalibrator", "choose_threshold"]


@dataclass(frozen=True, slots=True)
class Calibration:
    """A chosen threshold and what it is expected to do."""

    threshold: float
    hit_ratio: float
    error_rate: float
    false_hit_rate: float
    samples: int
    requests: int


def choose_threshold(
    samples: Iterable[tuple[float, bool]],
    requests: int,
    target_error_rate: float,
    *,
    floor: float = 0.0,
    ceiling: float = 1.0,
) -> Calibration:
    """Lowest threshold in [floor, ceiling] with error rate <= target (ceiling if none)."""
    if requests <= 0:
        raise ValueError("requests must be positive")
    ordered = sorted(((s, ok) for s, ok in samples if s >= floor), key=lambda x: -x[0])
    best = Calibration(ceiling, 0.0, 0.0, 0.0, len(ordered), requests)
    wrong = 0
    for index, (similarity, correct) in enumerate(ordered):
        wrong += not correct
        if similarity > ceiling:
            continue
        last_of_tie = index + 1 == len(ordered) or ordered[index + 1][0] < similarity
        if not last_of_tie:
            continue
        served = index + 1
        if wrong / requests <= target_error_rate:
            best = Calibration(
                threshold=similarity,
                hit_ratio=served / requests,
                error_rate=wrong / requests,
                false_hit_rate=wrong / served,
                samples=len(ordered),
                requests=requests,
            )
    return best


class OnlineCalibrator:
    """Sliding-window calibration of one namespace from verified samples."""

    def __init__(
        self,
        target_error_rate: float,
        *,
        floor: float,
        ceiling: float,
        window: int = 5000,
        min_samples: int = 200,
    ) -> None:
        self.target_error_rate = target_error_rate
        self.floor = floor
        self.ceiling = ceiling
        self.min_samples = min_samples
        self._samples: deque[tuple[float, bool]] = deque(maxlen=window)
        self._requests: deque[int] = deque(maxlen=window)  # requests seen per sample slot
        self._pending_requests = 0
        self.current: Calibration | None = None

    def count_request(self) -> None:
        """One more lookup observed (with or without a candidate)."""
        self._pending_requests += 1

    def observe(self, similarity: float, correct: bool) -> Calibration | None:
        """Add a verified sample; return the new calibration once there are enough."""
        self._samples.append((similarity, correct))
        self._requests.append(max(self._pending_requests, 1))
        self._pending_requests = 0
        if len(self._samples) < self.min_samples:
            return None
        self.current = choose_threshold(
            self._samples,
            sum(self._requests),
            self.target_error_rate,
            floor=self.floor,
            ceiling=self.ceiling,
        )
        return self.current

    @property
    def threshold(self) -> float | None:
        """The calibrated threshold, or None while samples are too few."""
        return None if self.current is None else self.current.threshold

"""Kubernetes Events the domain decides to post (the services post them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EventSpec"]


@dataclass(frozen=True)
class EventSpec:
    """A Kubernetes Event to post about the object: `Normal` or `Warning`."""

    type: str
    reason: str
    message: str

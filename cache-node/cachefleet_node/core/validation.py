"""Request bodies checked against the `openai` package's own request types (pure, no I/O).

The node accepts what the API accepts: a body is validated by the SDK's `TypedDict` of the
route (`CompletionCreateParams`, `ResponseCreateParams`, `EmbeddingCreateParams`), strictly (no
string for a number, as the API), with unknown fields allowed: the body itself is never
changed, so new fields reach the upstream as sent. Adjustments to the SDK's types, made on
their compiled schema: an `Iterable` field (the SDK's `messages`, `tools`, ...) is validated
as a list at once rather than lazily when read; a list stops at its first bad item (a long
bad body costs one item's errors, not one per item and union member); a field the SDK
marks required but nullable (`Required[Optional[...]]`, e.g. a function tool's `strict`) may
be left out, as the API defaults it; and a union takes its first matching member (the
output is not used, only whether the body is valid). The value ranges the SDK's types leave
to the API are checked, first, for the fields the cache reads (`Bounds`: a 10,001-message
body is refused before it is walked).

A refused body is a 400 naming the parameter (`messages[0].content`): among a union's
members, those a literal field rules out (a message's `role`, a part's `type`) are not
reported (nor those requiring a `type` the body lacks), so the error is the one of the
member the body meant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails, SchemaValidator

from cachefleet_node.core.errors import RequestError

__all__ = ["ApiBody", "Bounds", "validation_error_to_request_error"]


@dataclass(frozen=True, slots=True)
class Bounds:
    """The range of a number field's value, or with `length` of a string or list field's
    length, ends included."""

    low: float | None = None
    high: float | None = None
    length: bool = False

    def violation(self, value: Any) -> str | None:
        """Why `value` is out of range, or None (values of other types are the SDK's)."""
        measure: float
        if self.length:
            if not isinstance(value, str | list):
                return None
            measure, what = len(value), "length "
        elif isinstance(value, int | float) and not isinstance(value, bool):
            measure, what = value, ""
        else:
            return None
        if self.low is not None and measure < self.low:
            return f"{what}must be at least {self.low:g}"
        if self.high is not None and measure > self.high:
            return f"{what}must be at most {self.high:g}"
        return None


class ApiBody:
    """The validator of one API's request bodies, built from the SDK's type `params`."""

    def __init__(self, params: type[Any], bounds: Mapping[str, Bounds]) -> None:
        adapter: TypeAdapter[Any] = TypeAdapter(params)
        self._validator = SchemaValidator(_eager(adapter.core_schema))
        self._bounds = dict(bounds)

    def check(self, body: dict[str, Any]) -> None:
        """Raise a `RequestError` (400) naming the first bad parameter of `body`, if any."""
        for name, bounds in self._bounds.items():  # first: a too long list is not walked
            reason = bounds.violation(body.get(name))
            if reason is not None:
                raise RequestError(
                    400, f"invalid value for '{name}': {reason}", param=name, code="invalid_value"
                )
        try:
            self._validator.validate_python(body, strict=True)
        except ValidationError as exc:
            raise validation_error_to_request_error(exc, body) from exc


#: Schema types holding items: they stop at their first bad item, so a long bad body costs
#: one item's errors (a union reports one per member), not one per item.
_COLLECTIONS = ("list", "dict", "tuple", "set", "frozenset")


def _eager(node: Any) -> Any:
    """A compiled schema with generators (lazy `Iterable` checks) as lists, collections that
    stop at their first bad item, required nullable fields optional, and unions that stop
    at their first matching member."""
    if isinstance(node, list):
        return [_eager(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _eager(value) for key, value in node.items()}
    if schema.get("type") == "generator":
        kept = ("items_schema", "min_length", "max_length", "ref", "metadata")
        schema = {"type": "list", **{key: schema[key] for key in kept if key in schema}}
    if schema.get("type") in _COLLECTIONS:  # (a `fields` mapping may hold a `type` field)
        schema["fail_fast"] = True
    elif schema.get("type") == "union":
        schema["mode"] = "left_to_right"
    elif schema.get("type") == "typed-dict-field" and schema["schema"].get("type") == "nullable":
        schema["required"] = False
    return schema


@dataclass(frozen=True, slots=True)
class _Located:
    """One validation error placed in the body: the parameter path it names, how deep that
    is, and the union member it was raised in (its location up to the member's tag)."""

    param: str
    depth: int
    member: tuple[int | str, ...]
    detail: ErrorDetails


def _locate(detail: ErrorDetails, data: Any) -> _Located:
    """Follow an error's location through the body: parts naming a key or index present are
    the path; a trailing missing field ends it; any other part is a union member's tag."""
    loc = tuple(detail["loc"])
    node, path, depth = data, "", 0
    member: tuple[int | str, ...] = ()
    for index, part in enumerate(loc):
        present = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if present or (index == len(loc) - 1 and detail["type"] == "missing"):
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
            depth += 1
            node = node[part] if present else None
        else:
            member = loc[: index + 1]
    return _Located(path, depth, member, detail)


def _rules_out(item: _Located) -> bool:
    """Whether the error is a union member's literal field refusing the body's value (a
    message's `role`, a part's `type`), or the `type` it requires missing: the body meant
    another member."""
    loc = item.detail["loc"]
    return (
        bool(item.member)
        and len(loc) == len(item.member) + 1
        and (
            item.detail["type"] == "literal_error"
            or (item.detail["type"] == "missing" and loc[-1] == "type")
        )
    )


def validation_error_to_request_error(error: ValidationError, data: Any) -> RequestError:
    """The error of `data`'s validation as a 400 naming the parameter: union members ruled
    out by a literal field are left out (unless all are), then the deepest parameter most
    errors name is reported, with what each remaining member expected of it."""
    located = [_locate(detail, data) for detail in error.errors()]
    ruling = [item for item in located if _rules_out(item)]
    ruled_out = {item.member for item in ruling}

    def candidate(item: _Located) -> bool:
        """Not raised in a ruled-out member, except the literal that rules out its own."""
        loc = tuple(item.detail["loc"])
        within = {loc[:end] for end in range(1, len(loc) + 1)} & ruled_out
        return not within or (_rules_out(item) and within == {item.member})

    kept = [item for item in located if candidate(item)] or located
    counts = Counter(item.param for item in kept)
    chosen = max(kept, key=lambda item: (item.depth, not _rules_out(item), counts[item.param]))
    param = chosen.param
    same = [item.detail for item in kept if item.param == param]
    if any(detail["type"] == "missing" for detail in same):
        return RequestError(
            400,
            f"missing required parameter: '{param}'",
            param=param,
            code="missing_required_parameter",
        )
    literal = [detail for detail in same if detail["type"] == "literal_error"]
    if len(literal) == len(same):
        expected = (str((detail.get("ctx") or {}).get("expected", "")) for detail in literal)
        reason = "Input should be " + " or ".join(dict.fromkeys(expected))
    else:  # a type error: literal members (e.g. model names beside any string) add nothing
        reason = " or ".join(
            dict.fromkeys(detail["msg"] for detail in same if detail["type"] != "literal_error")
        )
    return RequestError(
        400, f"invalid value for '{param}': {reason}", param=param, code="invalid_value"
    )

"""Request bodies validated by the `openai` package's own request types (`core.validation`):
what the API accepts passes untouched, what it refuses is a 400 naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from cachefleet_node.core.embeddings import parse_embedding_request
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.request import parse_chat_request

USER = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "m", "input": 5}, "input", "invalid_value"),
        ({"model": "m", "input": [[1], ["x"]]}, "input[1][0]", "invalid_value"),
        (
            {"model": "m", "input": "x", "encoding_format": "hex"},
            "encoding_format",
            "invalid_value",
        ),
        ({"model": "m", "input": "x", "dimensions": "8"}, "dimensions", "invalid_value"),
        ({"model": 5, "input": "x"}, "model", "invalid_value"),
    ],
)
def test_embedding_bodies_the_api_refuses_name_the_parameter(
    body: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(RequestError) as info:
        parse_embedding_request(body)
    assert (info.value.status, info.value.param, info.value.code) == (400, param, code)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"model": "m", "input": "x", "truncate": "end"}, "unknown-field"),
        ({"model": "m", "input": []}, "invalid-request"),
        ({"model": "", "input": "x"}, "invalid-request"),
        ({"model": "m", "input": "x", "dimensions": 0}, "invalid-request"),
    ],
)
def test_embedding_bodies_the_cache_does_not_understand_go_upstream(
    body: dict[str, Any], reason: str
) -> None:
    assert parse_embedding_request(body) == reason


def test_embedding_bodies_of_every_input_shape_are_understood() -> None:
    for given, items in [
        ("a", ("a",)),
        (["a", "b"], ("a", "b")),
        ([1, 2], ((1, 2),)),
        ([[1], [2, 3]], ((1,), (2, 3))),
    ]:
        parsed = parse_embedding_request({"model": "m", "input": given})
        assert not isinstance(parsed, str)
        assert parsed.items == items


def test_chat_bodies_pass_as_the_api_takes_them() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "what is this?"}]},
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
        "stream": None,
        "a_field_the_sdk_does_not_know_yet": {"x": [1]},
    }
    request = parse_chat_request(body)
    assert request.body is body
    assert not request.stream


@pytest.mark.parametrize(
    ("field", "value"),
    [("temperature", "abc"), ("temperature", True), ("n", 1.5), ("model", ["m"])],
)
def test_a_wrong_type_is_named_as_such_not_as_out_of_range(field: str, value: Any) -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request({"model": "m", "messages": USER, field: value})
    assert info.value.param == field
    assert "must be" not in info.value.message

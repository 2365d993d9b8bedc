"""Pure core of the node: entries, cache controls, policies, scopes, savings, requests, auth."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from cachefleet_node.auth import TenantResolver
from cachefleet_node.config import (
    AuthConfig,
    ConfigError,
    ModelPrice,
    NamespaceConfig,
    NodeConfig,
    TenantKey,
)
from cachefleet_node.core.controls import TAGS_HEADER, THRESHOLD_HEADER, parse_controls
from cachefleet_node.core.entry import CacheEntry, EntryFormatError, completion_usage
from cachefleet_node.core.errors import RequestError
from cachefleet_node.core.policy import decide_request, response_cacheable
from cachefleet_node.core.request import decode_json_object, parse_chat_request
from cachefleet_node.core.savings import price_for, saved_dollars
from cachefleet_node.core.scope import InvalidationScope

TTL_HEADER = "x-cachefleet-ttl"


def answer(text: str, finish: str = "stop") -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5},
        }
    )


def make_entry(**changes: Any) -> CacheEntry:
    fields: dict[str, Any] = {
        "entry_id": "e1",
        "namespace": "support",
        "tenant": "acme",
        "model": "gpt-4o-mini",
        "created_at": 1000.0,
        "expires_at": 2000.0,
        "answers": (answer("héllo 🎉"),),
        "partition": "p" * 64,
        "prompt": "How do I reset my password?",
        "tags": ("billing", "faq"),
        "prompt_tokens": 3,
        "completion_tokens": 5,
    }
    fields.update(changes)
    return CacheEntry(**fields)


# --------------------------------------------------------------------------------- entry


@pytest.mark.parametrize(
    "entry",
    [
        make_entry(),
        make_entry(partition=None, prompt=None, tags=()),
        make_entry(answers=(answer("a"), answer("b", "length"), answer("c"))),
    ],
)
def test_entry_round_trips(entry: CacheEntry) -> None:
    decoded = CacheEntry.from_bytes(entry.to_bytes())
    assert decoded == entry
    assert decoded.size_bytes == entry.size_bytes
    assert [orjson.loads(a) for a in decoded.answers] == [orjson.loads(a) for a in entry.answers]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"[1, 2]",
        b"{}",
        b'{"v": 1}',
        make_entry().to_bytes()[:-5],
        make_entry().to_bytes().replace(b'"usage":[3,5]', b'"usage":3'),
        make_entry().to_bytes().replace(b'"usage":[3,5]', b'"usage":[3]'),
        make_entry().to_bytes().replace(b'"created":1000.0', b'"created":"soon"'),
        make_entry().to_bytes().replace(b'"answers":[', b'"answers":5,"x":['),
    ],
)
def test_corrupt_entry_raises_entry_format_error(data: bytes) -> None:
    with pytest.raises(EntryFormatError):
        CacheEntry.from_bytes(data)


@pytest.mark.parametrize("version", [0, 3, "1", None])
def test_unknown_entry_version_raises(version: Any) -> None:
    raw = orjson.loads(make_entry().to_bytes())
    raw["v"] = version
    with pytest.raises(EntryFormatError, match="version"):
        CacheEntry.from_bytes(orjson.dumps(raw))


def test_with_answer_keeps_the_last_n() -> None:
    entry = make_entry(answers=(answer("0"),))
    for i in range(1, 6):
        entry = entry.with_answer(answer(str(i)), limit=3, now=1000.0 + i, expires_at=5000.0 + i)
    assert [orjson.loads(a)["choices"][0]["message"]["content"] for a in entry.answers] == [
        "3",
        "4",
        "5",
    ]
    assert entry.created_at == 1005.0
    assert entry.expires_at == 5005.0
    assert entry.entry_id == "e1"
    assert entry.tags == ("billing", "faq")


def test_size_grows_with_answers_and_freshness() -> None:
    small = make_entry(answers=(answer("x"),))
    big = make_entry(answers=(answer("x" * 5000),))
    assert big.size_bytes - small.size_bytes == 4999
    assert small.is_fresh(1500.0)
    assert not small.is_fresh(2000.0)
    assert small.is_fresh(1500.0, max_age_s=600)
    assert not small.is_fresh(1500.0, max_age_s=499)


def test_completion_usage() -> None:
    assert completion_usage(orjson.loads(answer("x"))) == (3, 5)
    assert completion_usage({}) == (0, 0)
    assert completion_usage({"usage": None}) == (0, 0)
    assert completion_usage({"usage": {"prompt_tokens": -1, "completion_tokens": "7"}}) == (0, 0)


# ------------------------------------------------------------------------------ controls


def controls(headers: dict[str, str], **limits: Any) -> Any:
    kwargs = {"min_threshold": 0.75, "max_threshold": 0.99, "max_ttl_s": 3600} | limits
    return parse_controls(headers, **kwargs)


def test_no_headers_means_defaults() -> None:
    c = controls({})
    assert (c.read, c.write, c.max_age_s, c.threshold, c.tags, c.ttl_s) == (
        True,
        True,
        None,
        None,
        (),
        None,
    )


@pytest.mark.parametrize(
    ("value", "read", "write", "max_age"),
    [
        ("no-cache", False, True, None),
        ("no-store", True, False, None),
        ("max-age=60", True, True, 60.0),
        ("max-age=0", True, True, 0.0),
        ('max-age="30"', True, True, 30.0),
        ("No-Cache, NO-STORE", False, False, None),
        ("MAX-AGE = 15 , no-cache", False, True, 15.0),
        ("private, no-store, max-age=5, must-revalidate", True, False, 5.0),
        ("", True, True, None),
        ("public", True, True, None),
    ],
)
def test_cache_control(value: str, read: bool, write: bool, max_age: float | None) -> None:
    c = controls({"cache-control": value})
    assert (c.read, c.write, c.max_age_s) == (read, write, max_age)


@pytest.mark.parametrize(
    "value", ["max-age=-1", "max-age=abc", "max-age=1.5", "max-age", "max-age="]
)
def test_bad_max_age_is_a_400_naming_cache_control(value: str) -> None:
    with pytest.raises(RequestError) as info:
        controls({"cache-control": value})
    assert info.value.status == 400
    assert info.value.param == "cache-control"


@pytest.mark.parametrize(
    ("raw", "threshold", "clamped"),
    [("0.9", 0.9, False), ("0.5", 0.75, True), ("1", 0.99, True), ("0.75", 0.75, False)],
)
def test_threshold_is_clamped_to_the_namespace_range(
    raw: str, threshold: float, clamped: bool
) -> None:
    c = controls({THRESHOLD_HEADER: raw})
    assert c.threshold == threshold
    assert c.threshold_clamped is clamped


@pytest.mark.parametrize("raw", ["0", "-0.1", "1.01", "abc", "", "nan", "inf"])
def test_bad_threshold_is_a_400(raw: str) -> None:
    with pytest.raises(RequestError) as info:
        controls({THRESHOLD_HEADER: raw})
    assert (info.value.status, info.value.param) == (400, THRESHOLD_HEADER)


def test_tags_are_deduplicated_and_sorted() -> None:
    assert controls({TAGS_HEADER: " faq,billing , faq,,v1.2_x-y "}).tags == (
        "billing",
        "faq",
        "v1.2_x-y",
    )
    assert controls({TAGS_HEADER: ""}).tags == ()


@pytest.mark.parametrize(
    "raw",
    [
        "Billing",
        "a b",
        "-lead",
        "trail-",
        "x" * 64,
        "ümlaut",
        "a*",
        ",".join(f"t{i}" for i in range(17)),
    ],
)
def test_bad_tags_are_a_400(raw: str) -> None:
    with pytest.raises(RequestError) as info:
        controls({TAGS_HEADER: raw})
    assert (info.value.status, info.value.param) == (400, TAGS_HEADER)


def test_sixteen_tags_are_allowed() -> None:
    assert len(controls({TAGS_HEADER: ",".join(f"t{i}" for i in range(16))}).tags) == 16


@pytest.mark.parametrize(("raw", "ttl"), [("60", 60), ("3600", 3600), ("999999", 3600), ("1", 1)])
def test_ttl_is_capped_by_the_namespace(raw: str, ttl: int) -> None:
    assert controls({TTL_HEADER: raw}).ttl_s == ttl


@pytest.mark.parametrize("raw", ["0", "-5", "1.5", "soon", ""])
def test_bad_ttl_is_a_400(raw: str) -> None:
    with pytest.raises(RequestError) as info:
        controls({TTL_HEADER: raw})
    assert (info.value.status, info.value.param) == (400, TTL_HEADER)


# -------------------------------------------------------------------------------- policy


def chat(temperature: float | None = None, last_role: str = "user") -> Any:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather?"}]
    if last_role != "user":
        messages += [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                ],
            },
            {"role": last_role, "tool_call_id": "c1", "name": "w", "content": "sunny"},
        ]
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages}
    if temperature is not None:
        body["temperature"] = temperature
    return parse_chat_request(body)


def ns(**changes: Any) -> NamespaceConfig:
    return NamespaceConfig(name="support", **changes)


@pytest.mark.parametrize(
    ("policy", "temperature", "cacheable", "reason", "sample"),
    [
        ("cache", None, True, None, 1),
        ("cache", 0, True, None, 1),
        ("cache", 0.7, True, None, 1),
        ("bypass", 0, True, None, 1),
        ("bypass", None, True, None, 1),
        ("bypass", 0.7, False, "temperature", 1),
        ("sample:3", 0.7, True, None, 3),
        ("sample:3", 0, True, None, 1),
        ("sample:12", 1.5, True, None, 12),
    ],
)
def test_temperature_policies(
    policy: str, temperature: float | None, cacheable: bool, reason: str | None, sample: int
) -> None:
    decision = decide_request(chat(temperature), ns(temperature_policy=policy))
    assert (decision.cacheable, decision.reason, decision.sample_size) == (
        cacheable,
        reason,
        sample,
    )


@pytest.mark.parametrize("role", ["tool", "function"])
def test_tool_results_are_only_cached_when_allowed(role: str) -> None:
    decision = decide_request(chat(last_role=role), ns())
    assert (decision.cacheable, decision.reason) == (False, "tool-result")
    assert decide_request(chat(last_role=role), ns(cache_tool_results=True)).cacheable


def completion(*finishes: Any, **extra: Any) -> dict[str, Any]:
    return {
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": "x"}, "finish_reason": f}
            for i, f in enumerate(finishes)
        ],
        **extra,
    }


@pytest.mark.parametrize(
    ("body", "size", "reason"),
    [
        (completion("stop"), 100, None),
        (completion("length", "tool_calls"), 100, None),
        (completion("function_call"), 100, None),
        (completion("stop"), 262_144, None),
        (completion("stop"), 262_145, "too-large"),
        ([1, 2], 10, "malformed"),
        ("text", 10, "malformed"),
        ({"choices": [None]}, 10, "malformed"),
        ({"choices": [{"finish_reason": "stop"}]}, 10, "malformed"),
        ({"choices": [{"message": "x", "finish_reason": "stop"}]}, 10, "malformed"),
        ({}, 10, "no-choices"),
        ({"choices": []}, 10, "no-choices"),
        ({"choices": {"0": {}}}, 10, "no-choices"),
        (completion(None), 10, "unfinished"),
        (completion("stop", "content_filter"), 10, "unfinished"),
        (completion("stop", None), 10, "unfinished"),
    ],
)
def test_response_cacheable(body: Any, size: int, reason: str | None) -> None:
    assert response_cacheable(body, size, ns()) == reason


# --------------------------------------------------------------------------------- scope


@pytest.mark.parametrize(
    ("scope", "namespace", "tenant", "tags", "created", "expected"),
    [
        (InvalidationScope("a"), "a", "t1", (), 5.0, True),
        (InvalidationScope("a"), "b", "t1", (), 5.0, False),
        (InvalidationScope("a", tenant="t1"), "a", "t1", (), 5.0, True),
        (InvalidationScope("a", tenant="t1"), "a", "t2", (), 5.0, False),
        (InvalidationScope("a", tags=("x", "y")), "a", "t1", ("y", "z"), 5.0, True),
        (InvalidationScope("a", tags=("x", "y")), "a", "t1", ("z",), 5.0, False),
        (InvalidationScope("a", tags=("x",)), "a", "t1", (), 5.0, False),
        (InvalidationScope("a", created_before=10.0), "a", "t1", (), 9.99, True),
        (InvalidationScope("a", created_before=10.0), "a", "t1", (), 10.0, False),
        (InvalidationScope("a", "t1", ("x",), 10.0), "a", "t1", ("x",), 1.0, True),
        (InvalidationScope("a", "t1", ("x",), 10.0), "a", "t2", ("x",), 1.0, False),
        (InvalidationScope("a", "t1", ("x",), 10.0), "a", "t1", ("q",), 1.0, False),
        (InvalidationScope("a", "t1", ("x",), 10.0), "a", "t1", ("x",), 11.0, False),
    ],
)
def test_scope_matching(
    scope: InvalidationScope,
    namespace: str,
    tenant: str,
    tags: tuple[str, ...],
    created: float,
    expected: bool,
) -> None:
    assert scope.matches(namespace, tenant, tags, created) is expected


@pytest.mark.parametrize(
    "scope",
    [
        InvalidationScope("a"),
        InvalidationScope("a", tenant="t1", tags=("x", "y"), created_before=123.5),
    ],
)
def test_scope_dict_round_trip(scope: InvalidationScope) -> None:
    assert InvalidationScope.from_dict(orjson.loads(orjson.dumps(scope.to_dict()))) == scope


# ------------------------------------------------------------------------------- savings


PRICES = NodeConfig().prices


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1", None),
        ("claude-3-haiku", None),
        ("", None),
    ],
)
def test_price_lookup_by_longest_prefix(model: str, priced_as: str | None) -> None:
    expected = PRICES[priced_as] if priced_as else None
    assert price_for(model, PRICES) == expected


def test_saved_dollars() -> None:
    assert saved_dollars("gpt-4o-mini-2024-07-18", 1_000_000, 0, PRICES) == pytest.approx(0.15)
    assert saved_dollars("gpt-4o", 2_000, 1_000, PRICES) == pytest.approx(
        (2_000 * 2.50 + 1_000 * 10.00) / 1e6
    )
    assert saved_dollars("unpriced-model", 10**9, 10**9, PRICES) == 0.0
    custom = {"m": ModelPrice(input_per_mtok=1, output_per_mtok=2)}
    assert saved_dollars("m-2025", 500_000, 250_000, custom) == pytest.approx(1.0)


# ------------------------------------------------------------------------------- request


def test_request_keeps_the_original_body() -> None:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi", "name": "bob"}],
        "logit_bias": {"50256": -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    request = parse_chat_request(body)
    assert request.body is body
    assert (request.model, request.stream, request.temperature, request.n) == (
        "gpt-4o-mini",
        True,
        None,
        1,
    )
    assert request.include_usage
    assert not parse_chat_request({**body, "stream_options": None}).include_usage


USER = [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": USER}, "model", "missing_required_parameter"),
        ({"model": "m"}, "messages", "missing_required_parameter"),
        ({"model": "m", "messages": []}, "messages", "invalid_value"),
        ({"model": "", "messages": USER}, "model", "invalid_value"),
        ({"model": "m" * 257, "messages": USER}, "model", "invalid_value"),
        ({"model": "m", "messages": USER * 10_001}, "messages", "invalid_value"),
        (
            {"model": "m", "messages": [{"role": "user"}]},
            "messages[0].content",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": [*USER * 9_999, {"role": "user", "content": 5}]},
            "messages[9999].content",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}] * 10_000},
            "messages[0].content",
            "invalid_value",
        ),
        ({"model": "m", "messages": [{"role": "robot"}]}, "messages[0].role", "invalid_value"),
        (
            {"model": "m", "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages[0].content[0].type",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "messages": USER, "temperature": 3},
            "temperature",
            "invalid_value",
        ),
        (
            {"model": "m", "messages": USER, "temperature": "0.5"},
            "temperature",
            "invalid_value",
        ),
        ({"model": "m", "messages": USER, "n": 0}, "n", "invalid_value"),
        (
            {"model": "m", "messages": USER, "stream": "yes"},
            "stream",
            "invalid_value",
        ),
    ],
)
def test_bad_requests_name_the_parameter(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request(body)
    assert (info.value.status, info.value.param, info.value.code) == (400, param, code)
    assert param in info.value.message


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "empty_body"),
        (b'{"a": "\xff"}', "invalid_encoding"),
        (b"{nope", "invalid_json"),
        (b"[1]", "invalid_json"),
        (b'"s"', "invalid_json"),
    ],
)
def test_decode_json_object_errors(raw: bytes, code: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_json_object(raw)
    assert (info.value.status, info.value.code) == (400, code)


def test_decode_json_object() -> None:
    assert decode_json_object('{"é": 1}'.encode()) == {"é": 1}


# ---------------------------------------------------------------------------------- auth


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def test_no_keys_means_default_tenant_forwarding_auth() -> None:
    resolver = TenantResolver(AuthConfig(), environ={})
    assert not resolver.enabled
    for header in (None, "", "Bearer sk-anything", "garbage"):
        caller = resolver.resolve(header)
        assert (caller.tenant, caller.admin, caller.forward_auth) == ("default", True, True)


def test_keys_from_digest_and_env_map_to_tenants() -> None:
    config = AuthConfig(
        api_keys=[
            TenantKey(tenant="acme", key_sha256=sha("sk-acme")),
            TenantKey(tenant="globex", key_env="GLOBEX_KEY", admin=True),
        ]
    )
    resolver = TenantResolver(config, environ={"GLOBEX_KEY": "sk-globex"})
    assert resolver.enabled
    acme = resolver.resolve("Bearer sk-acme")
    assert (acme.tenant, acme.admin, acme.forward_auth) == ("acme", False, False)
    globex = resolver.resolve("bearer  sk-globex ")
    assert (globex.tenant, globex.admin, globex.forward_auth) == ("globex", True, False)


@pytest.mark.parametrize(
    "header", [None, "", "sk-acme", "Basic sk-acme", "Bearer ", "Bearer sk-other", "Bearer SK-ACME"]
)
def test_missing_or_unknown_keys_are_401(header: str | None) -> None:
    resolver = TenantResolver(
        AuthConfig(api_keys=[TenantKey(tenant="acme", key_sha256=sha("sk-acme"))]), environ={}
    )
    with pytest.raises(RequestError) as info:
        resolver.resolve(header)
    assert info.value.status == 401
    assert info.value.code == "invalid_api_key"
    assert "sk-" not in info.value.message


@pytest.mark.parametrize("environ", [{}, {"GLOBEX_KEY": ""}])
def test_missing_key_env_names_the_config_field(environ: dict[str, str]) -> None:
    config = AuthConfig(
        api_keys=[
            TenantKey(tenant="acme", key_sha256=sha("sk-acme")),
            TenantKey(tenant="globex", key_env="GLOBEX_KEY"),
        ]
    )
    with pytest.raises(ConfigError) as info:
        TenantResolver(config, environ=environ)
    assert "auth.api_keys.1.key_env" in str(info.value)
    assert "GLOBEX_KEY" in str(info.value)


@pytest.mark.parametrize(
    "fields",
    [{}, {"key_sha256": sha("k"), "key_env": "K"}, {"key_sha256": "ABC"}],
)
def test_tenant_key_needs_exactly_one_valid_source(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TenantKey(tenant="acme", **fields)

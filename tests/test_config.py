"""Node configuration: defaults, file + env + overrides precedence, field-named errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cachefleet_node.cli import main
from cachefleet_node.config import ConfigError, NodeConfig, load_node_config

SECRET_URL = "redis://:hunter2-s3cret@redis.internal:6379/0"


def write(tmp_path: Path, data: Any, name: str = "node.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def config_error(**kwargs: Any) -> str:
    kwargs.setdefault("environ", {})
    with pytest.raises(ConfigError) as info:
        load_node_config(**kwargs)
    return str(info.value)


def test_defaults_validate() -> None:
    config = load_node_config(environ={})
    assert config == NodeConfig()
    assert [ns.name for ns in config.namespaces] == ["default"]
    assert config.redis.url is None
    assert config.embedding.kind == "local"
    assert config.embedding.model_dir is None
    # The default model round-trips through its own JSON form.
    assert NodeConfig.model_validate_json(config.model_dump_json()) == config


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    assert load_node_config(write(tmp_path, ""), environ={}) == NodeConfig()


def test_file_env_and_override_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "redis": {"url": "redis://file:6379/0", "key_prefix": "fromfile"},
            "deadlines": {"redis_ms": 10, "milvus_ms": 70},
            "embedding": {"model_dir": "/from/file"},
            "namespaces": [{"name": "support", "similarity_threshold": 0.9}],
        },
    )
    env = {
        "CACHEFLEET_REDIS__URL": "redis://env:6379/1",
        "CACHEFLEET_DEADLINES__REDIS_MS": "35",
        "CACHEFLEET_EMBEDDING_MODEL_DIR": "/from/env",
        "UNRELATED": "x",
    }

    from_file = load_node_config(path, environ={})
    assert from_file.redis.url is not None
    assert from_file.redis.url.get_secret_value() == "redis://file:6379/0"
    assert from_file.deadlines.redis_ms == 10

    with_env = load_node_config(path, environ=env)
    assert with_env.redis.url is not None
    assert with_env.redis.url.get_secret_value() == "redis://env:6379/1"
    assert with_env.redis.key_prefix == "fromfile"  # merged, not replaced
    assert with_env.deadlines.redis_ms == 35.0
    assert with_env.deadlines.milvus_ms == 70.0
    assert with_env.embedding.model_dir == "/from/file"  # an explicit file value wins
    assert with_env.namespaces[0].name == "support"

    overridden = load_node_config(
        path,
        overrides={"redis": {"url": "redis://override:6379/2"}, "deadlines": {"redis_ms": 5}},
        environ=env,
    )
    assert overridden.redis.url is not None
    assert overridden.redis.url.get_secret_value() == "redis://override:6379/2"
    assert overridden.deadlines.redis_ms == 5.0
    assert overridden.deadlines.milvus_ms == 70.0


def test_model_dir_env_fills_an_unset_model_dir() -> None:
    config = load_node_config(environ={"CACHEFLEET_EMBEDDING_MODEL_DIR": "/models/minilm"})
    assert config.embedding.model_dir == "/models/minilm"
    overridden = load_node_config(
        overrides={"embedding": {"model_dir": "/cli"}},
        environ={"CACHEFLEET_EMBEDDING_MODEL_DIR": "/models/minilm"},
    )
    assert overridden.embedding.model_dir == "/cli"


def test_env_values_parse_as_yaml_scalars_but_urls_stay_verbatim() -> None:
    config = load_node_config(
        environ={
            "CACHEFLEET_L1__MAX_BYTES": "1024",
            "CACHEFLEET_LOGGING__LOG_PROMPTS": "true",
            "CACHEFLEET_UPSTREAM__BASE_URL": "http://127.0.0.1:9000/v1",
            "CACHEFLEET_REDIS__URL": "redis://:123@h:1/0",
            "CACHEFLEET_UPSTREAM_API_KEY": "sk-not-a-config-field",
        }
    )
    assert config.l1.max_bytes == 1024
    assert config.logging.log_prompts is True
    assert config.upstream.base_url == "http://127.0.0.1:9000/v1"
    assert config.redis.url is not None
    assert config.redis.url.get_secret_value() == "redis://:123@h:1/0"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {"namespaces": [{"name": "a", "similarity_threshold": 1.5}]},
            "namespaces.0.similarity_threshold",
        ),
        (
            {"namespaces": [{"name": "a"}, {"name": "b", "similarity_threshold": 0}]},
            "namespaces.1.similarity_threshold",
        ),
        ({"namespaces": [{"name": "Bad Name"}]}, "namespaces.0.name"),
        (
            {"namespaces": [{"name": "a", "temperature_policy": "sample:0"}]},
            "namespaces.0.temperature_policy",
        ),
        (
            {"namespaces": [{"name": "a", "temperature_policy": "always"}]},
            "namespaces.0.temperature_policy",
        ),
        ({"namespaces": [{"name": "a", "colour": "red"}]}, "namespaces.0.colour"),
        ({"namespaces": []}, "namespaces"),
        ({"redis": {"url": "http://localhost:6379"}}, "redis.url"),
        ({"redis": {"urll": "redis://x"}}, "redis.urll"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"upstream": {"base_url": "ftp://x"}}, "upstream.base_url"),
        ({"deadlines": {"redis_ms": -1}}, "deadlines.redis_ms"),
        ({"embedding": {"kind": "remote"}}, "embedding"),
        ({"embedding": {"kind": "gpu"}}, "embedding.kind"),
        ({"auth": {"api_keys": [{"tenant": "acme"}]}}, "auth.api_keys.0"),
        (
            {"prices": {"m": {"input_per_mtok": -1, "output_per_mtok": 1}}},
            "prices.m.input_per_mtok",
        ),
        ({"unknown_top_level": 1}, "unknown_top_level"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, data: dict[str, Any], field: str) -> None:
    message = config_error(path=write(tmp_path, data))
    assert f"{field}: " in message
    # Errors from overrides name the same field.
    assert f"{field}: " in config_error(overrides=data)


def test_duplicate_namespace_names() -> None:
    message = config_error(overrides={"namespaces": [{"name": "a"}, {"name": "b"}, {"name": "a"}]})
    assert "namespaces: " in message
    assert "duplicate namespace names: a" in message


@pytest.mark.parametrize(
    "namespace",
    [
        {"name": "a", "similarity_threshold": 0.7},  # below the default min 0.75
        {"name": "a", "min_threshold": 0.9, "max_threshold": 0.8, "similarity_threshold": 0.85},
        {"name": "a", "max_threshold": 0.8},  # default similarity 0.85 above max
    ],
)
def test_threshold_range_rule(namespace: dict[str, Any]) -> None:
    message = config_error(overrides={"namespaces": [{"name": "ok"}, namespace]})
    assert "namespaces.1: " in message
    assert "min_threshold <= similarity_threshold <= max_threshold" in message


def test_valid_threshold_range_and_sample_policy() -> None:
    config = load_node_config(
        overrides={
            "namespaces": [
                {
                    "name": "a",
                    "similarity_threshold": 0.6,
                    "min_threshold": 0.5,
                    "max_threshold": 0.7,
                    "temperature_policy": "sample:5",
                }
            ]
        },
        environ={},
    )
    assert config.namespaces[0].sample_size == 5


def test_remote_embedder_requires_a_url() -> None:
    message = config_error(overrides={"embedding": {"kind": "remote"}})
    assert "embedding.remote_url is required" in message
    config = load_node_config(
        overrides={"embedding": {"kind": "remote", "remote_url": "http://emb:8080"}}, environ={}
    )
    assert config.embedding.remote_url == "http://emb:8080"


def test_every_bad_field_is_reported() -> None:
    message = config_error(
        overrides={"server": {"port": -1}, "deadlines": {"milvus_ms": 0}, "bogus": True}
    )
    for field in ("server.port: ", "deadlines.milvus_ms: ", "bogus: "):
        assert field in message


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("- a\n- b\n", "must hold a mapping"),
        ("just a string", "must hold a mapping"),
        ("redis: {url: [unclosed\n", "not valid YAML"),
        ("a: b: c\n", "not valid YAML"),
    ],
)
def test_non_mapping_or_invalid_yaml(tmp_path: Path, content: str, fragment: str) -> None:
    path = write(tmp_path, content)
    message = config_error(path=path)
    assert fragment in message
    assert str(path) in message


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = config_error(path=missing)
    assert "cannot read config file" in message
    assert str(missing) in message
    assert "No such file" in message
    assert "cannot read config file" in config_error(path=tmp_path)  # a directory


@pytest.mark.parametrize("section", ["null", "5", "[1, 2]"])
def test_non_mapping_embedding_section_is_a_config_error(tmp_path: Path, section: str) -> None:
    path = write(tmp_path, f"embedding: {section}\n")
    message = config_error(path=path, environ={"CACHEFLEET_EMBEDDING_MODEL_DIR": "/m"})
    assert "embedding" in message


def test_secrets_are_not_shown(tmp_path: Path) -> None:
    config = load_node_config(
        overrides={
            "redis": {"url": SECRET_URL},
            "milvus": {"uri": "http://milvus:19530", "token": "root:milvus-pw"},
        },
        environ={},
    )
    assert config.redis.url is not None
    assert config.redis.url.get_secret_value() == SECRET_URL
    for rendered in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert "hunter2" not in rendered
        assert "milvus-pw" not in rendered
    # A secret in an invalid config is not echoed either.
    message = config_error(overrides={"redis": {"url": "http://:hunter2@x", "bogus": 1}})
    assert "redis.url: " in message
    assert "hunter2" not in message


# ------------------------------------------------------------------------------------ CLI


GOOD = {
    "namespaces": [{"name": "support", "similarity_threshold": 0.9}],
    "redis": {"url": SECRET_URL},
}
BAD = {"namespaces": [{"name": "support", "similarity_threshold": 2}]}


def test_check_config_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert printed["namespaces"][0]["name"] == "support"
    assert printed["namespaces"][0]["similarity_threshold"] == 0.9
    assert printed["deadlines"]["redis_ms"] == 20.0  # defaults are filled in
    assert printed["redis"]["url"] == "**********"
    assert "hunter2" not in out


def test_check_config_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(write(tmp_path, BAD))]) == 2
    captured = capsys.readouterr()
    assert "namespaces.0.similarity_threshold" in captured.err
    assert captured.out == ""


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_serve_with_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--config", str(write(tmp_path, BAD))]) == 2
    assert "namespaces.0.similarity_threshold" in capsys.readouterr().err


def test_serve_with_bad_flag_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    assert main(["serve", "--config", str(path), "--redis", "http://nope"]) == 2
    assert "redis.url" in capsys.readouterr().err

"""The client matrix, JavaScript side: the `openai` npm package, unmodified, run by the
machine's Node.js (`make system-deps` installs it) against a node in front of the stub.

The package is installed once per version into ~/.cache/cachefleet/npm. A machine without
`node` or `npm` fails these tests with the reason: the matrix is part of CI, not optional.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
import pytest_asyncio
from client_drivers import (
    CHAT_MODEL,
    EMBEDDING_MODEL,
    Driver,
    Listing,
    Reply,
    Usage,
    Vectors,
    stored,
    tool_call,
)
from client_matrix import Scenario, cases
from openai_stub import GOOD_KEY, OpenAIStub

from node_harness import Node

#: The newest `openai` release that runs on Debian's and the CI machine's Node.js (7.x needs 22).
OPENAI_NPM_VERSION = "6.49.0"
DRIVER = Path(__file__).with_name("openai_npm_driver.cjs")


def npm_package_dir() -> Path:
    """The directory holding node_modules/openai at the pinned version; installed if missing."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"`{tool}` is not installed: the npm client matrix needs Node.js and npm "
                "(make system-deps installs Debian's nodejs and npm)"
            )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache / "cachefleet" / "npm" / f"openai-{OPENAI_NPM_VERSION}"
    if (target / "node_modules" / "openai" / "package.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".install-"))
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", f"openai@{OPENAI_NPM_VERSION}"],
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.fail(f"npm install openai@{OPENAI_NPM_VERSION} failed:\n{done.stderr[-3000:]}")
    try:
        staging.rename(target)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return target


class NpmError(Exception):
    """An error the npm client raised: the name of its error class, its status, its message."""

    def __init__(self, name: str, status: int | None, message: str) -> None:
        super().__init__(f"{name} ({status}): {message}")
        self.name = name


class NpmDriver(Driver):
    """The `openai` npm package, behind openai_npm_driver.cjs (one JSON line per call)."""

    name = "openai-npm"
    error_base: ClassVar[type[BaseException]] = NpmError

    def __init__(self, base_url: str, process: asyncio.subprocess.Process) -> None:
        super().__init__(base_url)
        self.process = process

    def error_name(self, error: BaseException) -> str:
        assert isinstance(error, NpmError)
        return error.name

    async def _call(self, op: str, key: str, **fields: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"op": op, "base_url": self.base_url, "key": key, **fields}
        self.process.stdin.write(orjson.dumps(request) + b"\n")
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=60)
        if not line:
            assert self.process.stderr is not None
            problem = (await self.process.stderr.read()).decode()
            pytest.fail(f"the npm driver exited:\n{problem[-3000:]}")
        answer = orjson.loads(line)
        if "error" in answer:
            raise NpmError(**answer["error"])
        result: dict[str, Any] = answer["result"]
        return result

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        key: str = GOOD_KEY,
        model: str = CHAT_MODEL,
        stream: bool = False,
        include_usage: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        result = await self._call(
            "chat",
            key,
            messages=messages,
            model=model,
            stream=stream,
            include_usage=include_usage,
            tools=tools,
        )
        calls = tuple(tool_call(c["id"], c["name"], c["arguments"]) for c in result["tool_calls"])
        usage = Usage(**result["usage"]) if result["usage"] else None
        return Reply(result["text"], calls, usage, result["cache"], result["id"])

    async def embed(self, texts: list[str], *, key: str = GOOD_KEY) -> Vectors:
        result = await self._call("embed", key, model=EMBEDDING_MODEL, input=texts)
        return Vectors(result["vectors"], result["cache"])

    async def models(self, *, key: str = GOOD_KEY) -> Listing:
        result = await self._call("models", key)
        return Listing(result["ids"], result["cache"])

    async def respond(
        self, text: str, *, key: str = GOOD_KEY, stream: bool = False, store: bool | None = None
    ) -> Reply:
        result = await self._call(
            "respond", key, model=CHAT_MODEL, input=text, stream=stream, **stored(store)
        )
        return Reply(result["text"], cache=result["cache"])

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout=10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@pytest.fixture(scope="module")
def npm_openai() -> Path:
    return npm_package_dir()


@pytest_asyncio.fixture
async def npm_driver(npm_openai: Path, matrix_node: Node) -> AsyncIterator[NpmDriver]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(DRIVER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "OPENAI_NPM_DIR": str(npm_openai)},
    )
    driver = NpmDriver(f"{matrix_node.url}/v1", process)
    yield driver
    await driver.close()


def test_the_pinned_package_runs_on_this_node(npm_openai: Path) -> None:
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    installed = orjson.loads((npm_openai / "node_modules" / "openai" / "package.json").read_bytes())
    assert installed["version"] == OPENAI_NPM_VERSION
    assert int(version.lstrip("v").split(".")[0]) >= 18, f"Node.js {version} is too old"


@pytest.mark.parametrize(("driver", "scenario"), cases((NpmDriver,)))
async def test_client_matrix_npm(
    driver: type[Driver],  # always NpmDriver: the process comes from `npm_driver`
    scenario: Scenario,
    openai_stub: tuple[OpenAIStub, str],
    matrix_node: Node,
    npm_driver: NpmDriver,
) -> None:
    await scenario(npm_driver, openai_stub[0], matrix_node)

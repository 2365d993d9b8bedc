"""The docs: every relative link and anchor resolves; every command is exercised somewhere.

Links: every `[text](target)` in README.md, docs/**/*.md and examples/**/README.md whose target
is not a URL must name an existing file or directory, and a `#fragment` must be a heading of
the target file (GitHub's anchor rules). Commands: see tests/docs_commands.py; the quickstart's
`curl` commands are run verbatim against a real node process here.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from docs_commands import (
    EXERCISED,
    NOT_EXERCISED_TOOLS,
    ROOT,
    commands_of,
    doc_commands,
    doc_files,
    exercised_by,
)
from node_harness import (
    TEST_DEADLINES,
    MilvusServer,
    RedisServer,
    Stub,
    require,
    spawn_node,
    wait_ready,
)

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
_FENCED = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.DOTALL | re.MULTILINE)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = _FENCED.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    result = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE):
        base = anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    text = _CODE.sub("", path.read_text(encoding="utf-8"))
    return [a or b for a, b in _LINK.findall(text)]


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{target}: {resolved.relative_to(ROOT)} does not exist")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{target}: no heading #{fragment} in {resolved.name}")
    assert not problems, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_the_link_checker_catches_what_it_should(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## Step `1`: go!\n\n## Step 1 go\n")
    assert anchors(tmp_path / "other.md") == {"title", "step-1-go", "step-1-go-1"}
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#step-1-go) [b](missing.md) `[c](ignored.md)` ![i](pic.png)")
    assert links(page) == ["other.md#step-1-go", "missing.md", "pic.png"]


def test_every_doc_command_is_exercised() -> None:
    unknown = [
        f"{path.relative_to(ROOT)}: {command}"
        for path, command in doc_commands()
        if exercised_by(command) is None
    ]
    assert not unknown, (
        "commands in the docs with no test or target that runs them (add one and an entry "
        "in tests/docs_commands.py):\n  " + "\n  ".join(unknown)
    )


def test_the_exercise_list_is_honest() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    commands = [command for _, command in doc_commands()]
    for entry in EXERCISED:
        matched = [c for c in commands if re.fullmatch(entry.pattern, c)]
        assert matched, f"stale entry, no doc command matches {entry.pattern!r}"
        if entry.by.startswith("not exercised: "):
            assert all(c.startswith(NOT_EXERCISED_TOOLS) for c in matched), entry
        elif entry.by.startswith("make "):
            target = entry.by.removeprefix("make ")
            assert re.search(rf"^{re.escape(target)}:", makefile, re.MULTILINE), entry.by
        else:
            file, _, test = entry.by.partition("::")
            source = (ROOT / file).read_text(encoding="utf-8")
            assert re.search(rf"^(async )?def {re.escape(test)}\(", source, re.MULTILINE), entry.by


def test_command_extraction() -> None:
    from docs_commands import commands_in

    text = (
        "```bash\nmake a   # note\n\n# only a comment\nkubectl get x \\\n  -o wide\n```\n"
        "```\nnot a shell block\n```\n```sh\necho '#not a comment'\n```\n"
    )
    assert commands_in(text) == ["make a", "kubectl get x -o wide", "echo '#not a comment'"]


# --- the quickstart's curl commands, verbatim, against a real node ---------------------------


async def test_quickstart_curl_commands_against_a_real_node(
    tmp_path: Path,
    redis_server: RedisServer,
    milvus_server: MilvusServer,
    stub: Stub,
    model_dir: Path,
) -> None:
    """`cachefleet-node serve` with a stub upstream; the two `curl` lines of
    docs/quickstart.md (port 8080 swapped for the node's) give a miss, then an exact hit."""
    require(shutil.which("curl") is not None, "curl is not installed")
    await stub.reset()
    config = {
        "upstream": {"base_url": stub.base_url},
        "redis": {"url": redis_server.url},
        "milvus": {"uri": milvus_server.uri, "collection_prefix": "d" + uuid.uuid4().hex[:10]},
        "embedding": {"model_dir": str(model_dir)},
        "deadlines": TEST_DEADLINES,
    }
    node = spawn_node(config, tmp_path, "quickstart")
    try:
        await wait_ready(node)
        results = []
        for command in commands_of("docs/quickstart.md", "curl "):
            command = command.replace("http://127.0.0.1:8080", node.url)
            process = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                command,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "OPENAI_API_KEY": "sk-quickstart"},
            )
            out, _ = await process.communicate()
            assert process.returncode == 0
            headers = out.decode().lower()
            assert headers.startswith("http/1.1 200")
            results.append(re.search(r"^x-cachefleet-cache: (\S+)", headers, re.M).group(1))  # type: ignore[union-attr]
        assert results == ["miss", "hit-exact"]
        assert await stub.calls() == 1
    finally:
        node.stop()

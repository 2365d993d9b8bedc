"""Helpers of tests/gitops: run the Argo CD health checks (Lua) as Argo CD does.

`argocd_health` is what Argo CD shows for an object: gitops-engine's `GetResourceHealth`
answers Progressing ("Pending deletion") for an object with a deletionTimestamp (that is not a
sync hook) before any health check runs; otherwise deploy/argocd/health/cachefleet.io/<Kind>/health.lua decides, run
the way Argo CD runs it: Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1 VM), the object as a
global `obj`, the script's return value as the verdict, and no `os`, `io`, `require` or
`load*` (Argo CD does not open those for health scripts), so a script that needs them fails
here too.

Flux's side (kstatus) is not transcribed here: conftest.py's `kstatus` fixture runs the real Go
library (kstatus_tool.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import lupa.lua51 as lua51
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEALTH_DIR = ROOT / "deploy" / "argocd" / "health" / "cachefleet.io"
ARGOCD_CM = ROOT / "deploy" / "argocd" / "argocd-cm.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
KINDS = ("SemanticCache", "ModelVersion")
#: Argo CD's health status codes (gitops-engine `HealthStatusCode`).
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

#: What a health script may use: Lua's base functions without loaders, plus string, table and
#: math. Run under `setfenv`, so the script sees nothing else.
_SANDBOX = """
local script = ...
local chunk, err = loadstring(script, "health.lua")
if chunk == nil then error(err) end
local env = {
  ipairs = ipairs, pairs = pairs, next = next, type = type, tostring = tostring,
  tonumber = tonumber, select = select, unpack = unpack, error = error, pcall = pcall,
  string = string, table = table, math = math,
}
setfenv(chunk, env)
return function(obj)
  env.obj = obj
  return chunk()
end
"""


def health_script(kind: str) -> str:
    return (HEALTH_DIR / kind / "health.lua").read_text(encoding="utf-8")


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like Python data as Lua values (lists 1-based, like Argo CD's conversion)."""
    if isinstance(value, Mapping):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)  # Argo CD hands Lua JSON numbers (float64)
    raise TypeError(f"not JSON data: {value!r}")


def argocd_health(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """Argo CD's verdict on `obj`: {"status": ..., "message": ...} (see the module docstring)."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return {"status": "Progressing", "message": "Pending deletion"}
    return run_health_script(health_script(kind), obj)


@cache
def _compiled(script: str) -> tuple[Any, Callable[[Any], Any]]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    return runtime, runtime.execute(_SANDBOX, script)


def run_health_script(script: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """Run one health script in the sandbox (raises `lupa.lua51.LuaError` if it fails)."""
    runtime, run = _compiled(script)
    result = run(_to_lua(runtime, obj))
    return {key: result[key] for key in ("status", "message") if result[key] is not None}


def fixture(name: str) -> dict[str, Any]:
    data = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def argocd_cm_text() -> str:
    """deploy/argocd/argocd-cm.yaml as generated from the two health scripts."""
    lines = [
        "# Argo CD health checks for Cachefleet's custom resources. Generated from",
        "# deploy/argocd/health/cachefleet.io/*/health.lua by tests/gitops (regenerate with",
        "# CACHEFLEET_UPDATE_GOLDEN=1); do not edit by hand. Merge into your argocd-cm:",
        "#   kubectl -n argocd patch configmap argocd-cm --type merge \\",
        "#     --patch-file deploy/argocd/argocd-cm.yaml",
        "# or put the two keys under `configs.cm` of the Argo CD Helm chart.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "  namespace: argocd",
        "  labels:",
        "    app.kubernetes.io/name: argocd-cm",
        "    app.kubernetes.io/part-of: argocd",
        "data:",
    ]
    for kind in KINDS:
        lines.append(f"  resource.customizations.health.cachefleet.io_{kind}: |")
        lines += [f"    {line}" if line else "" for line in health_script(kind).splitlines()]
    return "\n".join(lines) + "\n"

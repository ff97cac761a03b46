"""Compare two OpenAPI documents: endpoints added or removed, authentication changed, limits declared.

``poet rank --openapi OLD NEW`` reads both versions of an API description (JSON
or YAML, bounded) and says, in sentences ranking reads as the change's words,
what a release owner must prove: new or removed endpoints (operations by
method and path), security schemes added, removed or changed, operations whose
security requirement changed (above all one that became public), and the
timeouts and rate limits the document declares (``x-timeout``-style
extensions, ``429`` responses, ``RateLimit``/``Retry-After`` headers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from poetkb.errors import InputError
from poetkb.models import PoetModel

MAX_OPENAPI_BYTES = 10_000_000
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


class ApiFinding(PoetModel):
    """One difference between the two documents that matters for reliability."""

    kind: Literal["endpoint", "auth", "timeout", "rate_limit"]
    action: Literal["added", "removed", "changed"]
    what: str
    detail: str = ""

    def sentence(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.kind.replace('_', ' ')} {self.action}: {self.what}{detail}"


class ApiDiff(PoetModel):
    """What changed between two OpenAPI documents."""

    old: str
    new: str
    findings: list[ApiFinding] = Field(default_factory=list)

    @property
    def text(self) -> str:
        words = {"endpoint": "api endpoint route", "auth": "authentication authorization auth policy token",
                 "timeout": "timeout deadline", "rate_limit": "rate limit throttling 429 shed excess traffic"}
        kinds = dict.fromkeys(f.kind for f in self.findings)
        lines = [f"API change ({self.old} -> {self.new}):"] + [f"- {f.sentence()}" for f in self.findings[:60]]
        return "\n".join(lines + [" ".join(words[k] for k in kinds)])


def load_document(path: str | Path) -> dict[str, Any]:
    """An OpenAPI document (JSON or YAML) as a mapping; InputError naming the file otherwise."""
    from poetkb import safefile

    shown = str(path)
    if not Path(path).exists():
        raise InputError("no such OpenAPI document", file=shown, hint="pass the old and the new document")
    text = safefile.read_text(Path(path), limit=MAX_OPENAPI_BYTES, display=shown)
    try:
        data = json.loads(text) if text.lstrip().startswith("{") else _yaml(text)
    except ValueError as exc:
        raise InputError(f"not JSON or YAML: {exc}", file=shown, hint="pass an OpenAPI document") from exc
    if not isinstance(data, dict) or not isinstance(data.get("paths", {}), dict) or not (
            "openapi" in data or "swagger" in data):
        raise InputError("not an OpenAPI document (no `openapi`/`swagger` version and `paths`)", file=shown,
                         hint="pass an OpenAPI 3 or Swagger 2 document")
    return data


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0]) from exc


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for path, item in sorted((doc.get("paths") or {}).items()):
        if not isinstance(item, dict):
            continue
        for method in METHODS:
            op = item.get(method)
            if isinstance(op, dict):
                out[f"{method.upper()} {path}"] = op
    return out


def _schemes(doc: dict[str, Any]) -> dict[str, Any]:
    comps = doc.get("components") or {}
    found = comps.get("securitySchemes") if isinstance(comps, dict) else None
    return dict(found or doc.get("securityDefinitions") or {})


def _security(doc: dict[str, Any], op: dict[str, Any]) -> str:
    value = op.get("security", doc.get("security"))
    if not value:
        return "none"
    return json.dumps(value, sort_keys=True)


def _limits(node: Any, prefix: str = "") -> dict[str, str]:
    """Declared timeouts and rate limits anywhere in a node: extensions, 429 responses, rate-limit headers."""
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            lower = str(key).lower()
            here = f"{prefix}.{key}" if prefix else str(key)
            if lower.startswith("x-") and "timeout" in lower or lower == "timeoutinmillis":
                out[f"timeout {here}"] = json.dumps(value, sort_keys=True)
            elif lower.startswith("x-") and ("ratelimit" in lower or "rate-limit" in lower or "throttl" in lower):
                out[f"rate_limit {here}"] = json.dumps(value, sort_keys=True)
            elif lower in ("429", "ratelimit", "ratelimit-limit", "x-ratelimit-limit", "retry-after"):
                out[f"rate_limit {here}"] = "declared"
            else:
                out.update(_limits(value, here))
    elif isinstance(node, list):
        for index, value in enumerate(node[:1000]):
            out.update(_limits(value, f"{prefix}[{index}]"))
    return out


def compare(old: dict[str, Any], new: dict[str, Any], *, old_name: str = "old", new_name: str = "new") -> ApiDiff:
    """The reliability-relevant differences between two OpenAPI documents."""
    findings: list[ApiFinding] = []
    before, after = _operations(old), _operations(new)
    for key in sorted(set(after) - set(before)):
        auth = _security(new, after[key])
        findings.append(ApiFinding(kind="endpoint", action="added", what=key,
                                   detail="no authentication" if auth == "none" else ""))
    for key in sorted(set(before) - set(after)):
        findings.append(ApiFinding(kind="endpoint", action="removed", what=key, detail="clients still calling it fail"))
    for key in sorted(set(before) & set(after)):
        was, now = _security(old, before[key]), _security(new, after[key])
        if was != now:
            detail = "now public: no authentication" if now == "none" else f"{was} -> {now}"
            findings.append(ApiFinding(kind="auth", action="changed", what=key, detail=detail))
    old_schemes, new_schemes = _schemes(old), _schemes(new)
    for name in sorted(set(old_schemes) | set(new_schemes)):
        a, b = old_schemes.get(name), new_schemes.get(name)
        if a == b:
            continue
        action: Literal["added", "removed", "changed"] = "added" if a is None else "removed" if b is None else \
            "changed"
        shown = b if b is not None else a
        kind = shown.get("type", "?") if isinstance(shown, dict) else "?"
        findings.append(ApiFinding(kind="auth", action=action, what=f"security scheme {name}", detail=str(kind)))
    old_limits, new_limits = _limits(old), _limits(new)
    for key in sorted(set(old_limits) | set(new_limits)):
        a, b = old_limits.get(key), new_limits.get(key)
        if a == b:
            continue
        kind_name, where = key.split(" ", 1)
        action = "added" if a is None else "removed" if b is None else "changed"
        findings.append(ApiFinding(kind=kind_name, action=action, what=where,  # type: ignore[arg-type]
                                   detail=f"{a} -> {b}" if action == "changed" else ""))
    return ApiDiff(old=old_name, new=new_name, findings=findings)


def read_openapi_change(old: str | Path, new: str | Path) -> ApiDiff:
    """Load and compare two documents named by path."""
    return compare(load_document(old), load_document(new), old_name=str(old), new_name=str(new))

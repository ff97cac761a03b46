"""Chaos Toolkit interop: import a CTK experiment (its documented JSON) and export ours to one.

**Import** maps what has a meaning here and names everything else with its JSON path, never
dropping it silently:

- ``title``, ``description``, ``tags``, ``configuration`` (plain values; ``{"type": "env", ...}``
  entries are named as not converted), ``steady-state-hypothesis.probes``, ``method``, ``rollbacks``;
- ``http`` providers become ``http`` probes (with the tolerance: a status, a list of statuses, a
  ``range`` on the status, a ``regex`` on the body that is a plain text) or ``http_call`` actions;
- ``pauses.before`` / ``pauses.after`` become the step's pauses; ``{"ref": NAME}`` repeats a step;
- ``${KEY}`` of a configuration key becomes ``${config.KEY}``;
- steps exported by poetkb (python provider ``poetkb.chaos.ctk_functions.run_step``) come back whole,
  and the ``poetkb`` extension restores obligations, watch, guardrails and production.

``python`` providers of other modules, ``process`` providers, ``controls``, ``secrets`` and
tolerances that are not one of the above cannot be converted: they are listed in the result.

**Export** writes every step CTK can express natively (an HTTP probe with a status-only tolerance, an
``http_call`` action) as an ``http`` provider and every other step as a ``python`` provider calling
:func:`poetkb.chaos.ctk_functions.run_step` with the step itself as argument, so a CTK run executes
poetkb's own code; what CTK has no field for (obligations, watch, guardrails) travels in the
``extensions`` entry named ``poetkb``. The export also declares poetkb's CTK control
(:mod:`poetkb.chaos.ctk_control`), which runs the watch loop and the guardrails when CTK runs it; its
arguments ``allow_remote`` and ``confirm_production`` are the CTK-side counterparts of the CLI's flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from poetkb.chaos.models import Experiment

PY_MODULE = "poetkb.chaos.ctk_functions"
PY_FUNC = "run_step"
#: the CTK control that runs poetkb's watch and guardrails under a CTK run (poetkb/chaos/ctk_control.py)
CONTROL_MODULE = "poetkb.chaos.ctk_control"
CONTROL_NAME = "poetkb-watch-and-guardrails"
EXTENSION = "poetkb"
OBLIGATION_TAG = "poetkb-obligation:"
_CTK_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OUR_CONFIG_REF = re.compile(r"\$\{config\.([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REF = re.compile(r"\$\{[^}]*\}")
_REGEX_META = re.compile(r"[\\.^$*+?{}\[\]|()]")


@dataclass
class Imported:
    """The converted experiment data (validate it with the loader) and what could not be converted."""

    data: dict[str, Any]
    unconverted: list[str] = field(default_factory=list)


# -- import -----------------------------------------------------------------------------------------------
def import_ctk(doc: Any, *, obligations: list[str] | None = None) -> Imported:
    """Convert a parsed CTK experiment to poetkb experiment data (see the module docstring)."""
    from poetkb.errors import InputError

    if not isinstance(doc, dict):
        raise InputError("a Chaos Toolkit experiment is a JSON object", field="$")
    out = Imported(data={})
    ext = _extension(doc)
    config, config_keys = _configuration(doc.get("configuration") or {}, out)
    tags = [t for t in doc.get("tags") or [] if isinstance(t, str)]
    found = [t[len(OBLIGATION_TAG):] for t in tags if t.startswith(OBLIGATION_TAG)]
    data: dict[str, Any] = {
        "title": doc.get("title") or "imported Chaos Toolkit experiment",
        "description": doc.get("description") or "",
        "obligations": list(obligations or ext.get("obligations") or found),
        "tags": [t for t in tags if not t.startswith(OBLIGATION_TAG)],
        "configuration": config,
    }
    if doc.get("secrets"):
        out.unconverted.append("$.secrets: not supported (poetkb experiments carry no secrets)")
    controls = doc.get("controls") or []
    foreign = [c for c in controls if not (isinstance(c, dict) and isinstance(c.get("provider"), dict)
                                           and c["provider"].get("module") == CONTROL_MODULE)] \
        if isinstance(controls, list) else [controls]
    if foreign:
        out.unconverted.append("$.controls: not supported (poetkb experiments carry no controls; poetkb's own "
                               "watch-and-guardrails control is implied)")
    names: dict[str, dict[str, Any]] = {}
    ssh = doc.get("steady-state-hypothesis") or {}
    probes = [s for i, raw in enumerate(ssh.get("probes") or [])
              if (s := _step(raw, f"$.steady-state-hypothesis.probes[{i}]", config_keys, names, out, probe_only=True))]
    steady: dict[str, Any] = {"title": ssh.get("title") or "the system is healthy", "probes": probes}
    if "watch" in ext:
        steady["watch"] = ext["watch"]
    data["steady_state"] = steady
    data["method"] = [s for i, raw in enumerate(doc.get("method") or [])
                      if (s := _step(raw, f"$.method[{i}]", config_keys, names, out))]
    data["rollbacks"] = [s for i, raw in enumerate(doc.get("rollbacks") or [])
                         if (s := _step(raw, f"$.rollbacks[{i}]", config_keys, names, out))]
    for key in ("guardrails", "production"):
        if key in ext:
            data[key] = ext[key]
    out.data = data
    return out


def _extension(doc: dict[str, Any]) -> dict[str, Any]:
    for ext in doc.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == EXTENSION:
            return ext
    return {}


def _configuration(raw: Any, out: Imported) -> tuple[dict[str, Any], set[str]]:
    config: dict[str, Any] = {}
    if not isinstance(raw, dict):
        out.unconverted.append("$.configuration: not an object")
        return config, set()
    for key, value in raw.items():
        if isinstance(value, str | int | float | bool) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
            config[key] = value
        elif isinstance(value, dict) and value.get("type") == "env" and "default" in value:
            config[key] = value["default"]
            out.unconverted.append(f"$.configuration.{key}: environment variable {value.get('key')!r} not read; "
                                   "its default was kept")
        else:
            out.unconverted.append(f"$.configuration.{key}: only plain values are converted")
    return config, set(config)


def _refs(value: Any, keys: set[str]) -> Any:
    """CTK ``${KEY}`` of a configuration key -> ``${config.KEY}`` (recursively)."""
    if isinstance(value, str):
        return _CTK_REF.sub(lambda m: f"${{config.{m.group(1)}}}" if m.group(1) in keys else m.group(0), value)
    if isinstance(value, dict):
        return {k: _refs(v, keys) for k, v in value.items()}
    if isinstance(value, list):
        return [_refs(v, keys) for v in value]
    return value


def _name(raw: Any, names: dict[str, dict[str, Any]]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", str(raw or "step")).strip("_-")[:56] or "step"
    if not re.match(r"[A-Za-z_]", base):
        base = f"s_{base}"
    name, n = base, 2
    while name in names:
        name, n = f"{base}_{n}", n + 1
    return name


def _step(raw: Any, path: str, keys: set[str], names: dict[str, dict[str, Any]], out: Imported, *,
          probe_only: bool = False) -> dict[str, Any] | None:
    if not isinstance(raw, dict):
        out.unconverted.append(f"{path}: not an object")
        return None
    if "ref" in raw:
        original = names.get(_name_key(raw["ref"], names))
        if original is None:
            out.unconverted.append(f"{path}: ref {raw['ref']!r} names no earlier step")
            return None
        copy = {**original, "name": _name(original["name"], names)}
        names[copy["name"]] = copy
        return copy
    provider = raw.get("provider") or {}
    kind = raw.get("type")
    ptype = provider.get("type") if isinstance(provider, dict) else None
    step: dict[str, Any]
    if ptype == "python" and provider.get("module") == PY_MODULE and provider.get("func") == PY_FUNC:
        step = dict((provider.get("arguments") or {}).get("step") or {})
        if not step:
            out.unconverted.append(f"{path}.provider.arguments.step: missing")
            return None
    elif ptype == "http":
        converted = _http_step(raw, provider, kind, path, keys, out)
        if converted is None:
            return None
        step = converted
    else:
        what = f"{ptype} provider" + (f" {provider.get('module')}.{provider.get('func')}" if ptype == "python" else "")
        out.unconverted.append(f"{path}: {what} cannot run here (only http providers and poetkb's own functions "
                               "are converted)")
        return None
    if probe_only and kind == "action":
        out.unconverted.append(f"{path}: an action in the steady-state hypothesis is not converted")
        return None
    pauses = raw.get("pauses") or {}
    if isinstance(pauses, dict) and step.get("type") != "pause":
        for ours, theirs in (("pause_before_s", "before"), ("pause_after_s", "after")):
            if theirs in pauses:
                step[ours] = pauses[theirs]
    if raw.get("background"):
        out.unconverted.append(f"{path}.background: steps run in order here; the steady state is watched instead")
    if ptype != "python" or not step.get("name"):
        step["name"] = _name(raw.get("name"), names)
    names[step["name"]] = step
    names.setdefault(f"ctk:{raw.get('name')}", step)
    return step


def _name_key(ref: Any, names: dict[str, dict[str, Any]]) -> str:
    return f"ctk:{ref}" if f"ctk:{ref}" in names else str(ref)


def _http_step(raw: dict[str, Any], provider: dict[str, Any], kind: Any, path: str, keys: set[str],
               out: Imported) -> dict[str, Any] | None:
    url = provider.get("url")
    if not isinstance(url, str):
        out.unconverted.append(f"{path}.provider.url: missing")
        return None
    step: dict[str, Any] = {"url": _refs(url, keys), "method": str(provider.get("method") or "GET").upper()}
    if provider.get("headers"):
        step["headers"] = {str(k): str(v) for k, v in _refs(provider["headers"], keys).items()}
    args = provider.get("arguments")
    if args is not None:
        import json

        step["body"] = args if isinstance(args, str) else json.dumps(_refs(args, keys))
        step.setdefault("headers", {}).setdefault("Content-Type", "application/json")
    timeout = provider.get("timeout")
    if isinstance(timeout, list) and timeout:
        timeout = max(t for t in timeout if isinstance(t, int | float))
    if isinstance(timeout, int | float) and timeout > 0:
        step["timeout_s"] = min(float(timeout), 120.0)
    if kind == "action":
        step["type"] = "http_call"
        expected = provider.get("expected_status")
        if isinstance(expected, int):
            step["expect_status"] = [expected]
        return step
    step["type"] = "http"
    if "tolerance" in raw:
        tolerance = _tolerance(raw["tolerance"], f"{path}.tolerance", out)
        if tolerance is not None:
            step["tolerance"] = tolerance
    return step


def _tolerance(raw: Any, path: str, out: Imported) -> dict[str, Any] | None:
    if isinstance(raw, bool):
        out.unconverted.append(f"{path}: a boolean tolerance on an http probe has no meaning here; the probe is "
                               "kept without a tolerance")
        return None
    if isinstance(raw, int):
        return {"status": [raw]}
    if isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        return {"status": list(raw)}
    if isinstance(raw, dict):
        target = raw.get("target", "status")
        if raw.get("type") == "range" and target == "status" and isinstance(raw.get("range"), list) \
                and len(raw["range"]) == 2:
            statuses = _status_range(int(raw["range"][0]), int(raw["range"][1]))
            if statuses:
                return {"status": statuses}
        if raw.get("type") == "regex" and target == "body" and isinstance(raw.get("pattern"), str) \
                and not _REGEX_META.search(raw["pattern"]):
            return {"status": ["2xx", "3xx"], "body_contains": raw["pattern"]}
    out.unconverted.append(f"{path}: tolerance {raw!r} is not converted (statuses, a status range and a plain-text "
                           "body match are); the probe is kept without a tolerance")
    return None


def _status_range(low: int, high: int) -> list[int | str] | None:
    """A status range as whole classes and single codes (at most 100 entries), or None."""
    low, high = max(100, low), min(599, high)
    found: list[int | str] = []
    code = low
    while code <= high:
        if code % 100 == 0 and code + 99 <= high:
            found.append(f"{code // 100}xx")
            code += 100
        else:
            found.append(code)
            code += 1
        if len(found) > 100:
            return None
    return found or None


# -- export -----------------------------------------------------------------------------------------------
def export_ctk(experiment: Experiment) -> dict[str, Any]:
    """A CTK experiment (JSON-ready dict) that runs ``experiment``'s steps (see the module docstring)."""
    config = dict(experiment.configuration)
    doc: dict[str, Any] = {
        "version": "1.0.0",
        "title": experiment.title,
        "description": experiment.description or experiment.title,
        "tags": [*experiment.tags, *(f"{OBLIGATION_TAG}{o}" for o in experiment.obligations)],
        "configuration": config,
        "steady-state-hypothesis": {"title": experiment.steady_state.title,
                                    "probes": [_export_step(p) for p in experiment.steady_state.probes]},
        "method": [_export_step(s) for s in experiment.method],
        "rollbacks": [_export_step(s) for s in experiment.rollbacks],
        # poetkb's watch loop and guardrails, run by CTK through this control (see ctk_control.py)
        "controls": [{"name": CONTROL_NAME, "provider": {
            "type": "python", "module": CONTROL_MODULE,
            "arguments": {"allow_remote": False, "confirm_production": False}}}],
        "extensions": [{"name": EXTENSION, "obligations": list(experiment.obligations),
                        "watch": experiment.steady_state.watch.model_dump(mode="json"),
                        "guardrails": experiment.guardrails.model_dump(mode="json"),
                        "production": experiment.production}],
    }
    if not config:
        del doc["configuration"]
    return doc


def _native_http(step: Any) -> bool:
    """True when CTK's own http provider does exactly what the step does (no poetkb-only reference)."""
    texts = [step.url, *step.headers.values(), step.body or ""]
    if any(_ANY_REF.search(_OUR_CONFIG_REF.sub("", t)) for t in texts):
        return False
    if step.pause_before_s or step.pause_after_s or step.description or step.timeout_s != 10.0:
        return False
    if step.type == "http":
        tol = step.tolerance
        return (tol is not None and all(isinstance(x, int) for x in tol.status) and tol.max_latency_ms is None
                and tol.body_contains is None and not tol.headers and step.method == "GET" and not step.body)
    return step.type == "http_call" and len(step.expect_status) == 1 and not step.body and not step.safe_in_prod


def _export_step(step: Any) -> dict[str, Any]:
    from poetkb.chaos.models import PROBE_TYPES

    kind = "probe" if step.type in PROBE_TYPES else "action"
    if step.type in ("http", "http_call") and _native_http(step):
        provider: dict[str, Any] = {"type": "http", "url": _OUR_CONFIG_REF.sub(r"${\1}", step.url),
                                    "method": step.method, "timeout": step.timeout_s}
        if step.headers:
            provider["headers"] = {k: _OUR_CONFIG_REF.sub(r"${\1}", v) for k, v in step.headers.items()}
        out: dict[str, Any] = {"type": kind, "name": step.name, "provider": provider}
        if step.type == "http":
            statuses = step.tolerance.status
            out["tolerance"] = statuses[0] if len(statuses) == 1 else list(statuses)
        else:
            provider["expected_status"] = step.expect_status[0]
        return out
    out = {"type": kind, "name": step.name,
           "provider": {"type": "python", "module": PY_MODULE, "func": PY_FUNC,
                        "arguments": {"step": step.model_dump(mode="json", exclude_defaults=True)
                                      | {"name": step.name, "type": step.type}}}}
    if kind == "probe":
        out["tolerance"] = True
    if step.type != "pause" and (step.pause_before_s or step.pause_after_s):
        # CTK's own pauses, so a CTK run waits where poet chaos run does
        out["pauses"] = {k: v for k, v in (("before", step.pause_before_s), ("after", step.pause_after_s)) if v}
    return out

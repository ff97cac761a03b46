"""Read obligations written in the original POET format.

The original files carried ``id, title, description, risk, safe_in_prod,
assumptions, required_signals, pass_criteria, suggested_checks,
evidence_to_capture``. They load unchanged: this module maps those fields
onto :class:`poetkb.models.Obligation` before validation, so a team can point
poetkb at its old catalog and keep every existing reference valid.
"""

from __future__ import annotations

from typing import Any

from poetkb.types import EvidenceKind

LEGACY_ONLY_FIELDS = frozenset({"description", "required_signals", "suggested_checks", "evidence_to_capture"})

_KIND_HINTS: list[tuple[tuple[str, ...], EvidenceKind]] = [
    (("pcap", "tcpdump", "packet", "wire"), "packet_capture"),
    (("metric", "prometheus", "counter", "gauge", "histogram"), "metrics"),
    (("upstream_count", "upstream counter", "backend count"), "upstream_counters"),
    (("access log", "access_log", "log line", "upstream_addr", "request_time", "log"), "access_log"),
    (("tls", "certificate", "handshake", "chain"), "tls_handshake"),
    (("config", "directive"), "config_snapshot"),
    (("p95", "p99", "latency", "throughput", "load test", "rps"), "load_summary"),
    (("junit", "test result"), "test_results"),
]


def is_legacy_obligation(item: Any) -> bool:
    """True when a mapping looks like an original POET obligation rather than a poetkb one."""
    return isinstance(item, dict) and "statement" not in item and bool(LEGACY_ONLY_FIELDS & item.keys())


def guess_evidence_kind(text: str) -> EvidenceKind:
    """Pick the evidence kind a free-text signal most likely names (an HTTP capture by default)."""
    lowered = text.lower()
    for needles, kind in _KIND_HINTS:
        if any(n in lowered for n in needles):
            return kind
    return "http_capture"


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def convert_legacy_obligation(item: dict[str, Any]) -> dict[str, Any]:
    """Map an original POET obligation onto the poetkb fields; unknown keys pass through to validation."""
    out: dict[str, Any] = {k: v for k, v in item.items() if k not in LEGACY_ONLY_FIELDS}
    description = str(item.get("description") or "").strip()
    out.setdefault("statement", description)
    out.setdefault("rationale", description)
    if isinstance(out.get("risk"), str):
        out["risk"] = out["risk"].strip().lower()
    evidence = list(out.get("evidence") or [])
    for signal in _strings(item.get("required_signals")):
        evidence.append({"kind": guess_evidence_kind(signal), "fields": [signal], "description": signal})
    for what in _strings(item.get("evidence_to_capture")):
        evidence.append({"kind": guess_evidence_kind(what), "description": what})
    if evidence:
        out["evidence"] = evidence
    checks = list(out.get("checks") or [])
    for text in _strings(item.get("suggested_checks")):
        checks.append({"kind": "manual", "description": text})
    if checks:
        out["checks"] = checks
    if "pass_criteria" in out:
        out["pass_criteria"] = _strings(out["pass_criteria"])
    if "assumptions" in out:
        out["assumptions"] = _strings(out["assumptions"])
    return out

"""Validate a translation with the proxy, and verify it: both configurations gated on the same obligations.

:func:`validate` runs ``nginx -t`` / ``haproxy -c`` on the translated text after
the same rewrite a gate run makes (test certificates, loopback ports, run paths),
so a translation that names certificates of another machine still validates.
:func:`verify` brings the original and the translation up on loopback in turn,
each in front of the demo's instrumented upstreams (:mod:`poetkb.ownedge`), gates
both on the same obligations, and compares verdicts one obligation at a time: an
obligation is *equivalent* only when both pass, *differing* when one passes and
the other does not, and *not judged* when neither passes (not-applicable,
no-evidence or failing on both: the gates cannot tell the two apart there).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from poetkb.models import PoetModel

Status = Literal["equivalent", "differing", "not-judged"]


class ObligationComparison(PoetModel):
    """One obligation's verdict on the original and on the translation."""

    obligation_id: str
    original: str
    translated: str
    status: Status
    original_diagnosis: str = ""
    translated_diagnosis: str = ""


class Verification(PoetModel):
    """Both configurations gated on the same obligations, compared."""

    original: str
    translated: str
    obligations: list[ObligationComparison] = Field(default_factory=list)
    equivalent: int = 0
    differing: int = 0
    not_judged: int = 0
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 when no obligation differs and at least one is equivalent, else 1 (nothing judged proves nothing)."""
        return 0 if self.differing == 0 and self.equivalent > 0 else 1


def validate(text: str, proxy: str) -> str | None:
    """None when the proxy accepts ``text`` (after the gate's rewrite), else the proxy's message."""
    from poetkb.demo.certs import ensure_certs
    from poetkb.ownedge.mutate import check_config

    with tempfile.TemporaryDirectory(prefix="poet-translate-") as tmp:
        path = Path(tmp) / ("nginx.conf" if proxy == "nginx" else "haproxy.cfg")
        path.write_text(text, encoding="utf-8")
        return check_config(path, proxy=proxy, certs=ensure_certs(Path(tmp) / "certs"))


def compare(original: Any, translated: Any) -> list[ObligationComparison]:
    """Per-obligation comparison of two gate reports over the same selection."""
    theirs = {o.obligation_id: o for o in translated.obligations}
    out = []
    for ours in original.obligations:
        other = theirs.get(ours.obligation_id)
        verdict = other.verdict if other is not None else "missing"
        passes = (ours.verdict == "pass", verdict == "pass")
        status: Status = "equivalent" if all(passes) else "differing" if any(passes) else "not-judged"
        out.append(ObligationComparison(obligation_id=ours.obligation_id, original=ours.verdict, translated=verdict,
                                        status=status, original_diagnosis=ours.diagnosis[:300],
                                        translated_diagnosis=(other.diagnosis[:300] if other else "")))
    return out


def verify(kb: Any, original: Path, original_proxy: str, translated: Path, translated_proxy: str, *,
           obligations: Sequence[str] = ()) -> Verification:
    """Gate the original and the translation on the same obligations (all edge ones by default) and compare."""
    from poetkb.gates.runner import gate
    from poetkb.gates.schema import Edge

    t0 = time.perf_counter()
    reports = [gate(kb, all=not obligations, obligations=list(obligations),
                    edge=Edge.from_options(config=path, proxy=proxy), record=False, write_reports=False)
               for path, proxy in ((original, original_proxy), (translated, translated_proxy))]
    rows = compare(*reports)
    return Verification(original=str(original), translated=str(translated), obligations=rows,
                        equivalent=sum(r.status == "equivalent" for r in rows),
                        differing=sum(r.status == "differing" for r in rows),
                        not_judged=sum(r.status == "not-judged" for r in rows),
                        duration_s=round(time.perf_counter() - t0, 1))

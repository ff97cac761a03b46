"""A translation and its verification as text and Markdown."""

from __future__ import annotations

from typing import Any


def text_summary(result: Any, verification: Any = None) -> str:
    lines = [f"{result.source} ({result.source_proxy}) -> {result.target_proxy}: "
             f"{'valid' if result.valid else 'INVALID: ' + str(result.validation_error)}",
             f"not translated: {len(result.untranslated)}"]
    lines += [f"  {u.file}:{u.line}: {u.directive}  ({u.reason})" for u in result.untranslated]
    if verification is not None:
        lines.append(f"verified on {len(verification.obligations)} obligations in {verification.duration_s} s: "
                     f"{verification.equivalent} equivalent, {verification.differing} differing, "
                     f"{verification.not_judged} not judged")
        lines += [f"  {c.status:<11} {c.obligation_id}: {c.original} / {c.translated}"
                  for c in verification.obligations if c.status != "equivalent"]
    return "\n".join(lines) + "\n"


def markdown(result: Any, verification: Any = None) -> str:
    cell = _cell
    out = [f"# Translation of {result.source}", "",
           f"{result.source_proxy} -> {result.target_proxy}; the proxy "
           f"{'accepts the result' if result.valid else 'refuses the result: ' + cell(result.validation_error)}.", "",
           f"## Not translated ({len(result.untranslated)})", ""]
    if result.untranslated:
        out += ["| line | directive | why |", "|---|---|---|"]
        out += [f"| {u.line} | `{cell(u.directive)}` | {cell(u.reason)} |" for u in result.untranslated]
    else:
        out.append("Everything in the subset was translated.")
    if verification is not None:
        out += ["", "## Verification", "",
                f"Both gated on {len(verification.obligations)} obligations in {verification.duration_s} s: "
                f"**{verification.equivalent} equivalent**, {verification.differing} differing, "
                f"{verification.not_judged} not judged (neither passes).", "",
                "| obligation | original | translated | status |", "|---|---|---|---|"]
        out += [f"| {c.obligation_id} | {c.original} | {c.translated} | {c.status} |" for c in verification.obligations]
    return "\n".join(out) + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")

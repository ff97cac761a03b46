"""Probe files: a configuration fragment, requests, and the observation a claim predicts.

A probe lives in ``knowledge/probes/<proxy>/*.yaml`` (a file holds ``probes:``, a list).
Its ``config`` is an NGINX ``http {}`` body or an HAProxy configuration after the
standard ``global``/``defaults`` (see :mod:`poetkb.verify.config_frame`), with placeholders
``{{listen}}`` (the port the proxy listens on), ``{{a}}``, ``{{b}}`` and ``{{c}}`` (three
demo upstreams), ``{{dead}}`` (a loopback port where nothing listens) and ``{{run}}`` (the
run directory). Steps set upstream faults, send requests and compare what comes back.

``knowledge/probes/verified.yaml`` records, per probe, the proxy version it last
passed on (written by ``poet kb verify --record``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, StringConstraints, ValidationError, model_validator

from poetkb.demo.state import Fault
from poetkb.errors import InputError, Problem
from poetkb.models import PoetModel
from poetkb.types import EntityId, NonEmptyStr
from poetkb.yamlfile import load_with_lines, problems_from_validation

PROBES_DIR = "knowledge/probes"
RECORD_FILE = "verified.yaml"
Proxy = Literal["nginx", "haproxy"]


class ProbeRequest(PoetModel):
    """One request to the proxy: through http.client, or ``raw`` bytes for framing probes."""

    method: str = "GET"
    path: str = "/echo"
    headers: dict[str, str] = Field(default_factory=dict)
    body: Annotated[str, StringConstraints(strip_whitespace=False)] | None = None
    #: literal request bytes (``\\r\\n`` written out); the reply is read until the peer closes or times out
    raw: Annotated[str, StringConstraints(strip_whitespace=False)] | None = None
    timeout_s: float = Field(default=3.0, gt=0, le=10)


class Expect(PoetModel):
    """What the reply must show. Header names are case-insensitive; ``"*"`` means any value."""

    status: int | list[int] | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    absent: list[str] = Field(default_factory=list)
    #: headers the upstream received, read from its echoed JSON body
    upstream_headers: dict[str, str] = Field(default_factory=dict)
    upstream_absent: list[str] = Field(default_factory=list)
    #: which demo upstream answered ("a" or "b")
    upstream: Literal["a", "b", "c"] | None = None
    body_contains: str | None = None
    #: the body serial equals (a cached copy) or differs from (a fresh answer) the one saved under this label
    same_serial_as: str | None = None
    new_serial_than: str | None = None
    #: the same upstream answered as for this label, except when that one is in ``allow_moved_from``
    same_upstream_as: str | None = None
    allow_moved_from: list[Literal["a", "b", "c"]] = Field(default_factory=list)


class FaultStep(Fault):
    """A fault for one demo upstream; ``clear: true`` removes it."""

    upstream: Literal["a", "b", "c"]
    clear: bool = False


class CountStep(PoetModel):
    """How many requests an upstream (or several, summed) received since the probe started or the last reset."""

    upstream: Literal["a", "b", "c"] | list[Literal["a", "b", "c"]]
    total: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)
    at_least: int | None = Field(default=None, ge=0)
    reset: bool = False


class RemapStep(PoetModel):
    """How many keys changed upstream between two rounds of saved requests (``before[i]`` vs ``after[i]``).

    Keys that were on an upstream listed in ``ignore_from`` (the one taken away) are not counted.
    """

    before: list[NonEmptyStr] = Field(min_length=1)
    after: list[NonEmptyStr] = Field(min_length=1)
    ignore_from: list[Literal["a", "b", "c"]] = Field(default_factory=list)
    moved_at_least: int | None = Field(default=None, ge=0)
    moved_at_most: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _pairs(self) -> RemapStep:
        if len(self.before) != len(self.after):
            raise ValueError("`before` and `after` need the same number of labels")
        return self


class RuntimeStep(PoetModel):
    """A command to HAProxy's runtime API (the frame opens ``{{run}}/admin.sock``), and what its answer holds."""

    command: NonEmptyStr
    reply_contains: str | None = None


class Step(PoetModel):
    """One step of a probe: exactly one of request, fault, sleep_s, counters, remap, runtime."""

    request: ProbeRequest | None = None
    expect: Expect | None = None
    save: str | None = None
    #: send the same request this many times, each reply checked against ``expect``
    repeat: int = Field(default=1, ge=1, le=40)
    #: send the request this many times at once; ``statuses`` then counts the replies by status
    parallel: int = Field(default=1, ge=1, le=16)
    statuses: dict[int, int] = Field(default_factory=dict)
    fault: FaultStep | None = None
    sleep_s: float | None = Field(default=None, gt=0, le=5)
    counters: CountStep | None = None
    remap: RemapStep | None = None
    runtime: RuntimeStep | None = None
    #: a new configuration fragment for an NGINX probe, applied by a reload (SIGHUP)
    reconfigure: str | None = None

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        actions = [a for a in (self.request, self.fault, self.sleep_s, self.counters, self.remap, self.runtime,
                               self.reconfigure) if a is not None]
        if len(actions) != 1:
            raise ValueError("a step needs exactly one of `request`, `fault`, `sleep_s`, `counters`, `remap`, "
                             "`runtime` or `reconfigure`")
        if self.expect is not None and self.request is None:
            raise ValueError("`expect` belongs to a `request` step")
        if (self.parallel > 1) != bool(self.statuses):
            raise ValueError("`parallel` requests are checked with `statuses` (status: how many), and only they are")
        return self


class Probe(PoetModel):
    """An executable check of one behaviour of one proxy."""

    id: EntityId
    proxy: Proxy
    title: NonEmptyStr
    #: what the probe demonstrates, in a sentence (shown when it fails)
    shows: NonEmptyStr
    config: NonEmptyStr
    #: small files written into the run directory first (name -> content), e.g. an HAProxy errorfile
    files: dict[str, Annotated[str, StringConstraints(strip_whitespace=False)]] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1, max_length=60)

    @model_validator(mode="after")
    def _steps_fit_the_proxy(self) -> Probe:
        if self.proxy != "nginx" and any(s.reconfigure is not None for s in self.steps):
            raise ValueError("`reconfigure` steps reload NGINX; HAProxy probes use `runtime` commands")
        if self.proxy != "haproxy" and any(s.runtime is not None for s in self.steps):
            raise ValueError("`runtime` steps talk to HAProxy's runtime API; NGINX probes use `reconfigure`")
        return self


class ProbeRecord(PoetModel):
    """The proxy version a probe last passed on."""

    proxy: Proxy
    version: NonEmptyStr
    verified_at: NonEmptyStr


class ProbeSet(PoetModel):
    """Every probe of a catalog, where each was defined, and the recorded versions."""

    probes: dict[str, Probe] = Field(default_factory=dict)
    sources: dict[str, str] = Field(default_factory=dict)
    records: dict[str, ProbeRecord] = Field(default_factory=dict)


def probe_files(root: Path) -> list[Path]:
    """Probe files below ``root/knowledge/probes`` in a stable order (the record file excluded)."""
    directory = root / PROBES_DIR
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*.yaml") if p.is_file() and p.name != RECORD_FILE)


def load_probes(root: Path) -> tuple[ProbeSet, list[Problem]]:
    """Read and validate every probe file; return the probes and every problem found."""
    found = ProbeSet()
    problems: list[Problem] = []
    for path in probe_files(root):
        shown = str(path.relative_to(root))
        try:
            data = load_with_lines(path, display=shown)
        except InputError as exc:
            problems.append(Problem(shown, exc.line, None, exc.message))
            continue
        items = data.get("probes") if isinstance(data, dict) else None
        if not isinstance(items, list):
            problems.append(Problem(shown, None, "probes", "a probe file needs a `probes` list"))
            continue
        for index, item in enumerate(items):
            line = getattr(item, "line", None)
            try:
                probe = Probe.model_validate(item)
            except ValidationError as exc:
                problems.extend(problems_from_validation(exc, item, file=shown, prefix=f"probes[{index}]"))
                continue
            if probe.id in found.probes:
                problems.append(Problem(shown, line, f"probes[{index}].id",
                                        f"duplicate probe id {probe.id!r} (first in {found.sources[probe.id]})"))
                continue
            if f"/{probe.proxy}/" not in f"/{shown}":
                problems.append(Problem(shown, line, f"probes[{index}].proxy",
                                        f"a {probe.proxy} probe belongs under {PROBES_DIR}/{probe.proxy}/"))
            found.probes[probe.id] = probe
            found.sources[probe.id] = f"{shown}:{line}" if line else shown
    records, record_problems = load_records(root)
    found.records.update(records)
    problems.extend(record_problems)
    return found, problems


def load_records(root: Path) -> tuple[dict[str, ProbeRecord], list[Problem]]:
    """The recorded versions, from ``knowledge/probes/verified.yaml`` (empty when there is none)."""
    path = root / PROBES_DIR / RECORD_FILE
    shown = f"{PROBES_DIR}/{RECORD_FILE}"
    if not path.is_file():
        return {}, []
    try:
        data = load_with_lines(path, display=shown)
    except InputError as exc:
        return {}, [Problem(shown, exc.line, None, exc.message)]
    records: dict[str, ProbeRecord] = {}
    problems: list[Problem] = []
    table = data.get("records") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        return {}, [Problem(shown, None, "records", "the record file needs a `records` mapping")]
    for probe_id, item in table.items():
        try:
            records[str(probe_id)] = ProbeRecord.model_validate(item)
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, item, file=shown, prefix=f"records.{probe_id}"))
    return records, problems


def write_records(root: Path, records: dict[str, ProbeRecord]) -> Path:
    """Write the record file (sorted, one probe a line block), replacing it atomically."""
    path = root / PROBES_DIR / RECORD_FILE
    body: dict[str, Any] = {"records": {k: records[k].model_dump() for k in sorted(records)}}
    header = ("# Written by `poet kb verify --record`: the proxy version each probe last passed on.\n"
              "# A proxy that behaves differently fails `poet kb verify` with the claims it checks named.\n")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(header + yaml.safe_dump(body, sort_keys=False, width=120), encoding="utf-8")
    tmp.replace(path)
    return path


def now_stamp() -> str:
    """The current UTC time, to the second, for a record."""
    return datetime.now(UTC).isoformat(timespec="seconds")

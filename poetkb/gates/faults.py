"""Client of the upstreams' admin API: read counters, inject faults, and always clear them again.

Each demo upstream serves ``/__poet/counters`` (GET, and POST ``/reset``) and
``/__poet/fault`` (GET/PUT/POST a fault, DELETE to heal) on its own port; see
``demo/README.md``. A :class:`FaultInjector` applies a
:class:`~poetkb.gates.params.FaultSpec` to the upstreams it targets and heals
every upstream it touched when the block ends, even when the check fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from poetkb.errors import InputError, TargetUnreachable
from poetkb.gates.params import FaultSpec
from poetkb.gates.records import CounterSnapshot
from poetkb.gates.schema import UpstreamInfo

if TYPE_CHECKING:
    import httpx

ADMIN_TIMEOUT_S = 3.0


class UpstreamAdmin:
    """The admin endpoint of one upstream."""

    def __init__(self, upstream: UpstreamInfo, client: httpx.Client) -> None:
        if not upstream.admin_url:
            raise InputError(f"upstream {upstream.name} has no admin URL", field="upstream-admin",
                             hint="pass --upstream-admin URL for each upstream, or run against the demo edge")
        self.upstream = upstream
        self.base = upstream.admin_url.rstrip("/")
        self.client = client

    def _url(self, tail: str) -> str:
        return f"{self.base}/__poet/{tail}" if not self.base.endswith("/__poet") else f"{self.base}/{tail}"

    def _call(self, method: str, tail: str, body: dict[str, Any] | None = None) -> Any:
        import httpx

        try:
            response = self.client.request(method, self._url(tail), json=body, timeout=ADMIN_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise TargetUnreachable(
                f"upstream admin API of {self.upstream.name} at {self.base} did not answer: {exc}",
                hint="check that the upstreams are running (`poet demo status`) or fix --upstream-admin",
            ) from exc
        if response.status_code >= 400:
            raise TargetUnreachable(
                f"upstream admin API of {self.upstream.name} answered {response.status_code} to "
                f"{method} {self._url(tail)}",
                hint="is --upstream-admin the admin URL of a poetkb demo upstream?",
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return None

    def counters(self) -> dict[str, Any]:
        data = self._call("GET", "counters")
        return data if isinstance(data, dict) else {}

    def reset_counters(self) -> None:
        self._call("POST", "counters/reset")

    def set_fault(self, spec: FaultSpec) -> None:
        self._call("PUT", "fault", spec.admin_body())

    def fault(self) -> dict[str, Any]:
        data = self._call("GET", "fault")
        return data if isinstance(data, dict) else {}

    def heal(self) -> None:
        self._call("DELETE", "fault")


class FaultInjector:
    """Injects faults into chosen upstreams and heals them; records what it did in ``notes``."""

    def __init__(self, upstreams: list[UpstreamInfo], client: httpx.Client) -> None:
        self.upstreams = upstreams
        self.client = client
        self.notes: list[dict[str, Any]] = []

    def select(self, target: str) -> list[UpstreamInfo]:
        """Upstreams a fault's ``target`` names: faulty, healthy, all, one by name, or several (comma-separated)."""
        if target == "all":
            chosen = list(self.upstreams)
        elif target in ("faulty", "healthy"):
            chosen = [u for u in self.upstreams if u.role == target]
        elif "," in target:  # several by name: a primary and a backup failing together
            names = {t.strip() for t in target.split(",")}
            chosen = [u for u in self.upstreams if u.name in names or u.role in names]
        else:
            chosen = [u for u in self.upstreams if u.name == target]
        if not chosen:
            known = ", ".join(f"{u.name} ({u.role})" for u in self.upstreams) or "none"
            raise InputError(f"fault target {target!r} matches no upstream (known: {known})", field="fault.target",
                             hint="pass --upstream-admin for the upstreams, or use the demo edge")
        return chosen

    def admin(self, upstream: UpstreamInfo) -> UpstreamAdmin:
        return UpstreamAdmin(upstream, self.client)

    @contextmanager
    def inject(self, spec: FaultSpec) -> Iterator[list[UpstreamInfo]]:
        """Apply ``spec`` to its target upstreams for the duration of the block, then heal them."""
        chosen = self.select(spec.target)
        applied: list[UpstreamInfo] = []
        try:
            for upstream in chosen:
                self.admin(upstream).set_fault(spec)
                applied.append(upstream)
            self.notes.append({"at": time.time(), "event": "inject", "upstreams": [u.name for u in chosen],
                               "fault": spec.admin_body()})
            yield chosen
        finally:
            for upstream in applied:
                with suppress(TargetUnreachable):  # heal_all reports an admin API that stopped answering
                    self.admin(upstream).heal()
            self.notes.append({"at": time.time(), "event": "heal", "upstreams": [u.name for u in applied]})

    def heal_all(self) -> list[str]:
        """Heal every upstream; return the problems (an unreachable admin API), if any."""
        problems = []
        for upstream in self.upstreams:
            if not upstream.admin_url:
                continue
            try:
                self.admin(upstream).heal()
            except TargetUnreachable as exc:
                problems.append(exc.message)
        return problems

    def snapshot(self, label: str, check_id: str | None, *, since: float | None = None) -> list[CounterSnapshot]:
        """Counters of every upstream at this moment; an unreachable admin API is recorded, not raised.

        ``since`` keeps only the ``recent`` requests from that time on (the counts are kept whole), so
        evidence holds the requests of the check, not the upstream's last thousand.
        """
        snaps = []
        for upstream in self.upstreams:
            if not upstream.admin_url:
                continue
            taken = time.time()
            try:
                data = self.admin(upstream).counters()
                if since is not None and isinstance(data.get("recent"), list):
                    data["recent"] = [r for r in data["recent"] if isinstance(r, dict)
                                      and isinstance(r.get("ts"), int | float) and r["ts"] >= since]
                snaps.append(CounterSnapshot(check=check_id, label=label, upstream=upstream.name,
                                             role=upstream.role, taken=taken, data=data))
            except TargetUnreachable as exc:
                snaps.append(CounterSnapshot(check=check_id, label=label, upstream=upstream.name,
                                             role=upstream.role, taken=taken, error=exc.message))
        return snaps

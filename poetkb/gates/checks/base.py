"""What collectors and evaluators share: the collection context, the outcome type, small helpers.

A collector ``collect(ctx, params)`` drives traffic through ``ctx`` (which
records every exchange, handshake, counter snapshot and metrics scrape as
evidence) and may leave notes. An evaluator ``evaluate(ev, params) -> Outcome``
is a pure function of a :class:`~poetkb.gates.evidence.CheckEvidence`; it never
touches the network, so a stored run can be judged again, and evidence from
other tools can be judged the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from poetkb.gates.evidence import CheckEvidence, EvidenceWriter, slug
from poetkb.gates.params import FaultSpec
from poetkb.gates.probes import Prober, RequestSpec, make_client
from poetkb.gates.records import HttpExchange
from poetkb.gates.schema import TargetInfo, Verdict
from poetkb.models import PoetModel

if TYPE_CHECKING:
    import httpx

    from poetkb.gates.faults import FaultInjector

NONCE_PARAM = "poet"


class CollectError(Exception):
    """A check cannot collect its evidence (a prerequisite is missing); the verdict becomes ``error``."""


@dataclass
class Outcome:
    """What an evaluator concludes: verdict, expected vs observed, a diagnosis sentence, numbers."""

    verdict: Verdict
    expected: str
    observed: str
    diagnosis: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    samples: int = 0


#: drives traffic through the context and leaves evidence (raises CollectError when a prerequisite is missing)
Collector = Callable[["CollectContext", Any], None]
#: judges an evidence bundle with the kind's parameters; pure, never touches the network
Evaluator = Callable[[CheckEvidence, Any], Outcome]


@dataclass(frozen=True)
class Kind:
    """One check kind, declared once, in the module that implements it: its name, parameter model, the evidence
    its evaluator reads, its collector and its evaluator.

    ``collect`` is None only for kinds judged from evidence other tools produce (load summaries, JUnit results),
    ``evaluate`` only for ``manual`` (a person judges it); both are required arguments, so neither can be left
    out by accident. ``traffic``: an edge-wide ``--all`` drives it at an edge; ``service``: it drives the
    demo's service tier. ``summary`` defaults to the first line of the parameter model's docstring.
    :mod:`poetkb.gates.checks.registry` collects the declarations; the light table the catalog validates
    against (:mod:`poetkb.gates.kind_table`) is generated from them.
    """

    name: str
    params: type[PoetModel]
    evidence: tuple[str, ...]
    collect: Collector | None
    evaluate: Evaluator | None
    traffic: bool = True
    service: bool = False
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.summary:
            object.__setattr__(self, "summary", (self.params.__doc__ or "").strip().splitlines()[0])


def declare(*kinds: Kind) -> dict[str, Kind]:
    """A module's kinds by name; a kind declared twice is a programming error, raised at import."""
    table: dict[str, Kind] = {}
    for kind in kinds:
        if kind.name in table:
            raise ValueError(f"check kind {kind.name} is declared twice")
        table[kind.name] = kind
    return table


def no_evidence(expected: str, why: str) -> Outcome:
    return Outcome("no-evidence", expected, "nothing to judge by", why)


def error(expected: str, why: str) -> Outcome:
    return Outcome("error", expected, "the check could not be judged", why)


def listing(items: Iterable[Any], limit: int = 3) -> str:
    """``a, b, c and 4 more``: a short list for diagnoses."""
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def with_nonce(path: str, nonce: str, extra: str = "") -> str:
    """``path`` with the run's marker in the query, so evidence of this check is told from other traffic."""
    value = f"{nonce}{extra}"
    return f"{path}{'&' if '?' in path else '?'}{NONCE_PARAM}={value}"


def identity(exchange: HttpExchange) -> str | None:
    """Which origin response a client got: upstream name and the body's serial (a cache hit repeats it)."""
    body = exchange.body_json
    if not body or "serial" not in body:
        return None
    return f"{body.get('upstream', '?')}#{body['serial']}"


def precheck(ev: CheckEvidence, expected: str, needs: Iterable[str]) -> Outcome | None:
    """An ``error`` outcome when collection failed or a needed evidence file is missing or altered."""
    if ev.collect_error:
        return error(expected, f"collection failed: {ev.collect_error}")
    for name in needs:
        if name in ev.problems:
            return error(expected, ev.problems[name])
    return None


def log_problem(ev: CheckEvidence, expected: str) -> Outcome | None:
    """An ``error`` outcome naming the malformed or truncated access-log lines of this check, if any."""
    if ev.log is None or not ev.log.problems:
        return None
    bad = ev.log.problems
    return error(expected, f"access.log has {plural(len(bad), 'unreadable line')}: {listing(bad, 2)}")


class CollectContext:
    """Everything a collector may use: probers, fault injection, counters, metrics, notes."""

    def __init__(self, *, target: TargetInfo, check_id: str, nonce: str, writer: EvidenceWriter,
                 client: httpx.Client, faults: FaultInjector | None, transport: Any = None,
                 reload: Callable[[], None] | None = None, timeout: float = 5.0,
                 fresh_connections: bool = False, router: Callable[[RequestSpec], RequestSpec] | None = None) -> None:
        self.target = target
        self.check_id = check_id
        self.nonce = nonce
        self.writer = writer
        self.client = client
        self.faults_ = faults
        self.transport = transport
        self.reload_ = reload
        self.notes: dict[str, Any] = {}
        self.files: list[str] = []
        self.started = time.time()
        self._extra_clients: list[httpx.Client] = []
        # the check's own connections to the edge: a reload before it (clean state) closed the old ones
        own = make_client(target.base_url, transport=transport) if target.base_url else client
        if own is not client:
            self._extra_clients.append(own)
        self.edge = own
        self.router = router
        self.fresh_connections = fresh_connections
        self.prober = Prober(own, writer.exchange, check_id=check_id, timeout=timeout,
                             fresh_connections=fresh_connections, router=router)

    def vantage_prober(self, vantage: Any) -> Prober:
        """A prober through the virtual host (``via_host``) and listener (``listener``) ``vantage`` names."""
        host = getattr(vantage, "via_host", None)
        prober = self.prober
        if getattr(vantage, "listener", "http") == "mtls":
            t = self.target
            if not (t.mtls_url and t.ca_cert and t.client_cert and t.client_key):
                raise CollectError("this check probes the mTLS listener, but no mTLS URL, CA and client "
                                   "certificate are known; run against the demo edge")
            prober = self.prober_for(t.mtls_url, verify=t.ca_cert, cert=(t.client_cert, t.client_key))
            prober.fresh_connections = self.fresh_connections
            prober.default_extensions = {"sni_hostname": host or "edge.test"}
        elif host:
            prober = Prober(self.edge, self.writer.exchange, check_id=self.check_id, timeout=self.prober.timeout,
                            fresh_connections=self.fresh_connections, router=self.router)
        prober.default_host = host
        return prober

    def use_vantage(self, params: Any) -> None:
        """Send this check's traffic through the virtual host and listener its parameters name (if any)."""
        if getattr(params, "via_host", None) or getattr(params, "listener", "http") != "http":
            self.prober = self.vantage_prober(params)
            self.notes["vantage"] = {"host": params.via_host, "listener": params.listener}

    # -- traffic --------------------------------------------------------------------------------
    def url(self, path: str, extra: str = "") -> str:
        return with_nonce(path, self.nonce, extra)

    def send(self, method: str, path: str, *, step: str = "", nonce: bool = True, **kwargs: Any) -> HttpExchange:
        return self.prober.send(RequestSpec(method=method, path=self.url(path) if nonce else path, step=step,
                                            **kwargs))

    def send_many(self, specs: list[RequestSpec], *, concurrency: int = 1) -> list[HttpExchange]:
        return self.prober.send_many(specs, concurrency=concurrency)

    def prober_for(self, base_url: str, *, verify: Any, cert: tuple[str, str] | None = None,
                   timeout: float = 5.0) -> Prober:
        """A prober on another listener (TLS, mTLS), with its own client closed when the check ends."""
        import ssl

        context: Any = verify
        if cert is not None:
            context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            context.load_cert_chain(*cert)
        elif isinstance(verify, str):
            context = ssl.create_default_context(cafile=verify)
        client = make_client(base_url, timeout=timeout, verify=context, transport=self.transport)
        self._extra_clients.append(client)
        return Prober(client, self.writer.exchange, check_id=self.check_id, timeout=timeout, router=self.router)

    def close(self) -> None:
        for client in self._extra_clients:
            client.close()

    # -- faults, counters, metrics ---------------------------------------------------------------
    @property
    def faults(self) -> FaultInjector:
        if self.faults_ is None or not self.faults_.upstreams:
            raise CollectError("this check injects faults and reads upstream counters, but no upstream admin API "
                               "is known; pass --upstream-admin URL for each upstream or run against the demo edge")
        return self.faults_

    @contextmanager
    def fault(self, spec: FaultSpec, path: str | None = None) -> Iterator[None]:
        """Inject ``spec`` (limited to ``path``'s prefix when the spec names no paths) for the block."""
        if path and not spec.paths:
            spec = spec.model_copy(update={"paths": [path.split("?", 1)[0]]})
        with self.faults.inject(spec):
            yield
        self.notes.setdefault("faults", []).extend(self.faults.notes[-2:])

    def counters(self, label: str) -> None:
        self.writer.counters(self.faults.snapshot(label, self.check_id, since=self.started - 1.0))

    def metrics(self, label: str) -> str | None:
        """Scrape the metrics endpoint into ``metrics/<check>--<label>.prom``; None without an endpoint."""
        if not self.target.metrics_url:
            return None
        try:
            response = self.client.get(self.target.metrics_url, timeout=5.0)
            text = response.text
            status = response.status_code
        except Exception as exc:  # noqa: BLE001 - any transport failure is evidence, not a crash
            self.notes.setdefault("metrics_errors", []).append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        if status != 200:
            self.notes.setdefault("metrics_errors", []).append(f"{label}: HTTP {status} from {self.target.metrics_url}")
        rel = self.writer.write_file(f"metrics/{slug(self.check_id)}--{label}.prom", text.encode(), "metrics",
                                     f"{self.target.metrics_url} ({label}, HTTP {status})")
        self.files.append(rel)
        return text

    def reload(self) -> None:
        if self.reload_ is None:
            raise CollectError("this check reloads the edge's configuration under traffic, but no reload is "
                               "known; run against the demo edge or pass --reload-command")
        self.reload_()

    def sleep_until(self, moment: float) -> None:
        """Sleep until ``time.monotonic()`` reaches ``moment`` (bounded by the caller's arithmetic)."""
        delay = moment - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, 60.0))


def counter_deltas(snaps: list[Any], before: str, after: str,
                   path: str | list[str] | None = None) -> dict[str, int] | None:
    """Requests each upstream counted between two snapshots (for one path, or the sum over several, when
    given); None if unusable."""
    first = {s.upstream: s for s in snaps if s.label == before}
    last = {s.upstream: s for s in snaps if s.label == after}
    if not first or not last:
        return None
    out: dict[str, int] = {}
    for name, end in last.items():
        start = first.get(name)
        if start is None or start.data is None or end.data is None:
            return None
        if path is None:
            out[name] = (end.total or 0) - (start.total or 0)
        else:
            paths = [path] if isinstance(path, str) else path
            out[name] = sum(end.by_path().get(x, 0) - start.by_path().get(x, 0) for x in paths)
    return out


def counter_errors(snaps: list[Any]) -> list[str]:
    return sorted({f"{s.upstream}: {s.error}" for s in snaps if s.error})


def path_only(path: str) -> str:
    return path.split("?", 1)[0]

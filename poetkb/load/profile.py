"""The service profile: what a service is, the traffic it takes and the SLOs it promises.

A profile is a small YAML or JSON file written by the service's engineers. It is
the single input of load planning (:mod:`poetkb.load.plan`) and the yardstick of
interpretation (:mod:`poetkb.load.interpret`). Loading validates it with pydantic
and reports every problem at once with file, line and field, because a profile
with a typo would otherwise produce a plausible but wrong plan.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from poetkb.errors import InputError, Problem
from poetkb.models import PoetModel
from poetkb.types import NonEmptyStr

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

#: latency percentiles a profile can set SLOs for, in ascending order
PERCENTILES = ("p50", "p95", "p99")
#: sanity ceilings: far above any real service, low enough that plans built from them stay finite
MAX_RPS = 10_000_000.0
MAX_BURST_FACTOR = 1000.0
MAX_LATENCY_MS = 86_400_000.0
MAX_WEIGHT = 1_000_000.0


def _rate(value: float, what: str) -> float:
    if value < 0:
        raise ValueError(f"{what} must not be negative (got {value:g}); give requests per second, 0 or more")
    if value > MAX_RPS:
        raise ValueError(f"{what} of {value:g} requests per second is beyond any service (limit {MAX_RPS:,.0f})")
    return value


class Traffic(PoetModel):
    """The request rates the service sees: normal, peak, and how sharp bursts get."""

    baseline_rps: float = Field(description="Normal sustained request rate, requests per second.")
    peak_rps: float = Field(description="Highest regular request rate (the daily or weekly peak).")
    burst_factor: float = Field(
        default=1.5, description="How far above the peak a short burst goes (burst rate = peak_rps x burst_factor)."
    )

    @field_validator("baseline_rps")
    @classmethod
    def _baseline(cls, value: float) -> float:
        _rate(value, "baseline_rps")
        if value == 0:
            raise ValueError("baseline_rps must be above 0: the steady and soak scenarios run at it")
        return value

    @field_validator("peak_rps")
    @classmethod
    def _peak(cls, value: float, info: ValidationInfo) -> float:
        _rate(value, "peak_rps")
        baseline = info.data.get("baseline_rps")
        if baseline is not None and value < baseline:
            raise ValueError(
                f"peak_rps ({value:g}) is below baseline_rps ({baseline:g}); the peak is the highest regular rate"
            )
        if value == 0:
            raise ValueError("peak_rps must be above 0: a load plan needs a rate to aim at")
        return value

    @field_validator("burst_factor")
    @classmethod
    def _burst(cls, value: float) -> float:
        if value < 1:
            raise ValueError(f"burst_factor must be 1 or more (got {value:g}); 2 means bursts reach twice the peak")
        if value > MAX_BURST_FACTOR:
            raise ValueError(f"burst_factor {value:g} is beyond any real burst (limit {MAX_BURST_FACTOR:g})")
        return value

    @property
    def burst_rps(self) -> float:
        return self.peak_rps * self.burst_factor


class LatencySLO(PoetModel):
    """Latency objectives in milliseconds; each percentile is optional but at least one is required."""

    p50: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, description="Median latency SLO, ms.")
    p95: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, description="95th percentile latency SLO, ms.")
    p99: float | None = Field(default=None, gt=0, le=MAX_LATENCY_MS, description="99th percentile latency SLO, ms.")

    @field_validator("p95")
    @classmethod
    def _p95(cls, value: float | None, info: ValidationInfo) -> float | None:
        p50 = info.data.get("p50")
        if value is not None and p50 is not None and value < p50:
            raise ValueError(f"p95 ({value:g} ms) is below p50 ({p50:g} ms); a higher percentile cannot be faster")
        return value

    @field_validator("p99")
    @classmethod
    def _p99(cls, value: float | None, info: ValidationInfo) -> float | None:
        for lower in ("p95", "p50"):
            bound = info.data.get(lower)
            if value is not None and bound is not None:
                if value < bound:
                    raise ValueError(
                        f"p99 ({value:g} ms) is below {lower} ({bound:g} ms); a higher percentile cannot be faster"
                    )
                break
        return value

    @model_validator(mode="after")
    def _at_least_one(self) -> LatencySLO:
        if self.p50 is None and self.p95 is None and self.p99 is None:
            raise ValueError("no latency SLO: set at least one of p50, p95, p99 (milliseconds)")
        return self

    def items(self) -> list[tuple[str, float]]:
        """The percentiles that have an SLO, ascending: [("p95", 400.0), ...]."""
        return [(p, v) for p in PERCENTILES if (v := getattr(self, p)) is not None]


class SLO(PoetModel):
    """The service level objectives a load test is judged against."""

    latency_ms: LatencySLO
    error_rate: float = Field(description="Highest acceptable share of failed requests, a fraction (0.01 = 1%).")
    min_throughput_rps: float | None = Field(
        default=None, description="Lowest acceptable completed request rate; default: the baseline rate."
    )

    @field_validator("error_rate", mode="before")
    @classmethod
    def _percent_string(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                return float(value.strip()[:-1]) / 100
            except ValueError:
                raise ValueError(f"error_rate {value!r} is not a percentage like '0.5%'") from None
        return value

    @field_validator("error_rate")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(
                f"error_rate is a fraction between 0 and 1 (0.01 = 1%), got {value:g}; write 0.01 or '1%'"
            )
        return value

    @field_validator("min_throughput_rps")
    @classmethod
    def _throughput(cls, value: float | None) -> float | None:
        return None if value is None else _rate(value, "min_throughput_rps")


class Endpoint(PoetModel):
    """One endpoint of the service; critical endpoints get a larger share of the planned load."""

    path: NonEmptyStr = Field(description="Path, with {name} placeholders for path parameters.")
    method: HttpMethod = "GET"
    critical: bool = False
    weight: float | None = Field(default=None, gt=0, le=MAX_WEIGHT,
                                 description="Share of real traffic (any unit; normalised).")
    body: dict[str, Any] | list[Any] | str | None = Field(default=None, description="Request body to send (JSON).")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path {value!r} must start with '/'")
        return value


class Dependency(PoetModel):
    """Something the service calls that also takes load during a test."""

    name: NonEmptyStr
    kind: str = ""
    notes: str = ""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class DataPolicy(PoetModel):
    """What data a load test may touch."""

    uses_production_data: bool = False
    notes: str = ""


class ServiceProfile(PoetModel):
    """A service, its traffic, its SLOs and its endpoints: the input of load planning and interpretation."""

    service: NonEmptyStr
    summary: str = ""
    traffic: Traffic
    slo: SLO
    endpoints: list[Endpoint] = Field(min_length=1)
    dependencies: list[Dependency] = Field(default_factory=list)
    data: DataPolicy = Field(default_factory=DataPolicy)

    def fingerprint(self) -> str:
        """A short stable hash of the profile's content (recorded in the evidence log)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


_MISSING_HINTS = {
    "slo": "the profile has no SLOs: add `slo:` with latency_ms (p50/p95/p99 in ms) and error_rate",
    "slo.latency_ms": "no latency SLO: add slo.latency_ms with at least one of p50, p95, p99 (ms)",
    "slo.error_rate": "no error-rate SLO: add slo.error_rate as a fraction (0.01 = 1%)",
    "traffic": "the profile has no traffic: add `traffic:` with baseline_rps and peak_rps",
    "endpoints": "the profile names no endpoints: add `endpoints:` with at least one path",
}


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the mapping that holds ``loc``'s last part."""
    model: Any = ServiceProfile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or [])]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, PoetModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def profile_problems(exc: ValidationError, data: Any, *, file: str) -> list[Problem]:
    """Problems of a profile with line numbers, spelling suggestions and what to add for missing parts."""
    from poetkb.yamlfile import problems_from_validation

    problems = problems_from_validation(exc, data, file=file)
    improved: list[Problem] = []
    for problem, err in zip(problems, exc.errors(), strict=True):
        loc = tuple(err.get("loc", ()))
        message = problem.message
        if err.get("type") == "missing" and problem.field in _MISSING_HINTS:
            message = _MISSING_HINTS[problem.field or ""]
        elif err.get("type") == "extra_forbidden":
            known = _known_fields(loc)
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            allowed = f"allowed here: {', '.join(known)}" if known else "see `poet schema service-profile`"
            message = f"unknown field{f' (did you mean {close[0]!r}?)' if close else ''}; {allowed}"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        improved.append(Problem(file=problem.file, line=problem.line, field=problem.field, message=message))
    return improved


def raise_problems(problems: list[Problem], *, file: str, what: str) -> None:
    """Raise one InputError naming the file, the line and the field of each problem."""
    if len(problems) == 1:
        p = problems[0]
        raise InputError(p.message, file=p.file, line=p.line, field=p.field,
                         hint=f"fix the {what}; `poet schema service-profile` lists the fields")
    body = "\n".join(f"  {p}" for p in problems)
    raise InputError(f"{len(problems)} problems in the {what}:\n{body}", file=file,
                     hint="fix each line above; `poet schema service-profile` lists the fields")


def parse_profile(data: Any, *, source: str = "<profile>") -> ServiceProfile:
    """Validate already-parsed profile data (a mapping), reporting problems against ``source``."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise InputError(f"a service profile must be a mapping with service, traffic, slo and endpoints; "
                         f"this file is {kind}", file=source)
    try:
        return ServiceProfile.model_validate(data)
    except ValidationError as exc:
        raise_problems(profile_problems(exc, data, file=source), file=source, what="service profile")
        raise  # pragma: no cover - raise_problems always raises


def load_profile(path: str | Path) -> ServiceProfile:
    """Read and validate a service profile from a YAML or JSON file (bounded, depth- and alias-limited)."""
    from poetkb.yamlfile import load_with_lines

    target = Path(path)
    if not target.exists() and not target.is_symlink():
        raise InputError("no such profile file", file=target,
                         hint="pass the path of a service profile (see docs/examples/profiles/)")
    data = load_with_lines(target, json_lines=True)
    return parse_profile(data, source=str(target))


def json_with_lines(text: str, data: Any, *, file: str) -> Any:
    """Re-read valid JSON ``text`` with the YAML line loader (JSON is YAML) so messages can name lines."""
    from poetkb.yamlfile import parse_yaml

    try:
        lined = parse_yaml(text, file=file)
    except InputError:
        return data
    return lined if lined == data else data


def as_profile(profile: ServiceProfile | str | Path | dict[str, Any]) -> ServiceProfile:
    """Accept a profile object, a path, or a mapping (for library callers)."""
    if isinstance(profile, ServiceProfile):
        return profile
    if isinstance(profile, dict):
        return parse_profile(profile)
    return load_profile(profile)

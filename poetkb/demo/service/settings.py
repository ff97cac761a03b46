"""The service's settings, written by ``poet demo up`` as JSON, and the start-up checks that refuse bad ones.

Fail fast: a production service with mock authentication, or with no issuer,
audience or key-set URL, exits at start with status 2 and a message naming the
setting; it never serves with authentication skipped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poetkb.demo.service.variants import Flaws
from poetkb.models import PoetModel


class ServiceSettings(PoetModel):
    """Everything the service process needs (``RUNDIR/service.json``)."""

    environment: Literal["production", "staging", "development"] = "production"
    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    dsn: str
    issuer: str = ""
    audience: str = ""
    jwks_url: str = ""
    dependency_url: str
    issuer_admin_url: str
    mock_auth: bool = False
    pool_size: int = Field(default=4, ge=1, le=32)
    pool_timeout_s: float = Field(default=1.0, gt=0, le=30)
    workers: int = Field(default=8, ge=1, le=64)
    queue: int = Field(default=16, ge=0, le=256)
    dependency_timeout_s: float = Field(default=0.8, gt=0, le=30)
    jwks_ttl_s: float = Field(default=2.0, gt=0, le=3600)
    jwks_min_refetch_s: float = Field(default=1.0, ge=0, le=600)
    jwks_stale_max_s: float = Field(default=30.0, ge=0, le=86400)
    variant: str = "good"
    flaws: Flaws = Field(default_factory=Flaws)


def startup_problems(settings: ServiceSettings) -> list[str]:
    """Why the service must refuse to start with these settings (empty when it may start)."""
    problems = []
    for name in ("issuer", "audience", "jwks_url"):
        if not getattr(settings, name).strip():
            problems.append(f"{name} is not set: tokens cannot be verified without it")
    if settings.mock_auth and settings.environment == "production" and not settings.flaws.mock_auth_in_production:
        problems.append("mock_auth is on with environment=production: mock authentication is for tests only")
    return problems

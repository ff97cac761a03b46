"""The service-tier checks added for migrations, drift, retries, bursts and soaks, against the real tier.

One bring-up of the service tier for the module, switched from variant to
variant: each seeded-fault variant made for these checks fails the obligation
it breaks (the good service passing them all is
``tests/test_service_tier.py::test_good_service_passes_every_service_obligation``). That it fails nothing else, for every variant against every
service obligation, is ``benchmarks/service_matrix.py`` (too slow for the test run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poetkb.demo.service import tier
from poetkb.demo.service.variants import VARIANTS

pytestmark = pytest.mark.proxy

#: the obligations these checks drive, and the variant built to break each
NEW = {
    "data.migration.backward_compatible": "migration-incompatible",
    "data.migration.idempotent": "migration-not-atomic",
    "data.schema.drift.detected": "drift-unchecked",
    "perf.burst.recovery": "overload-latch",
    "perf.soak.stable": "memory-leak",
    "resilience.retry.backoff": "retry-storm",
    "resilience.partition.recovery": "partition-hang",
    "data.outbox.no_loss": "outbox-dual-write",
}


@pytest.fixture(scope="module")
def gate(shared_home: Path, base_port: int, built_kb_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Gate the new obligations against a service variant (switching the one module-wide tier)."""
    import shutil

    import poetkb

    kb_file = tmp_path_factory.mktemp("kb") / "kb.sqlite"
    shutil.copy(built_kb_file, kb_file)
    kb = poetkb.open(kb_file)

    def run(variant: str, obligations: list[str]) -> dict[str, Any]:
        with pytest.MonkeyPatch.context() as mp:  # each test's own POET_HOME is set after this fixture's
            mp.setenv("POET_HOME", str(shared_home))
            tier.up(variant=variant, base_port=base_port)
            report = kb.gate(obligations=obligations)
        return {o.obligation_id: o for o in report.obligations}

    yield run
    kb.close()


@pytest.mark.parametrize(("obligation", "variant"), sorted(NEW.items()),
                         ids=[v for _, v in sorted(NEW.items())])
def test_each_new_variant_fails_what_it_breaks(gate: Any, obligation: str, variant: str) -> None:
    """The variant fails the obligation it breaks, with a diagnosis (that it fails nothing else is the matrix's job)."""
    assert VARIANTS[variant].breaks == [obligation]
    verdicts = gate(variant, [obligation])
    assert verdicts[obligation].verdict == "fail", (verdicts[obligation].verdict, verdicts[obligation].diagnosis)
    assert verdicts[obligation].diagnosis

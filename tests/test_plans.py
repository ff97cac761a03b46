"""Test plans and runbooks: what they hold, how they render, and that the generated examples do not drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.kb import KnowledgeBase
from poetkb.plans.examples import examples_dir, render_examples

CATALOG = Path(__file__).resolve().parent / "fixtures" / "rank" / "catalog"
CACHE_DIFF = (
    "--- a/edge/nginx.conf\n+++ b/edge/nginx.conf\n@@ -1,3 +1,3 @@\n location / {\n"
    '-    proxy_cache_key "$host$uri";\n+    proxy_cache_key "$uri";\n }\n'
)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "kb.sqlite"
    store.build(load_catalog(CATALOG), path, source=str(CATALOG))
    return path


@pytest.fixture
def small(small_file: Path) -> Iterator[KnowledgeBase]:
    base = poetkb.open(small_file)
    yield base
    base.close()


def test_test_plan_is_a_checklist_for_the_component(small: KnowledgeBase) -> None:
    """Each item says what must be true, why, how to exercise it on the component, evidence, gate and coverage."""
    plan = small.test_plan(None, diff=CACHE_DIFF)
    assert plan.component == "nginx" and plan.items[0].id == "t.cache.key"
    item = plan.items[0]
    assert item.must_be_true.startswith("The cache key includes everything")
    assert item.changed_directives == ["edge/nginx.conf:2 (proxy_cache_key changed)"]
    assert [d.name for r in item.exercise for d in r.directives] == ["proxy_cache_key"]  # no HAProxy directive
    assert item.exercise[0].steps[0].startswith("Request /page on host a")
    assert [e.kind for e in item.evidence] == ["access_log", "http_capture"]
    assert item.gate_command == "poet gate run --obligation t.cache.key"
    assert [t.test for t in item.own_tests] == ["test_cache_key_has_host"]
    assert plan.gate_command.startswith("poet gate run --obligation t.cache.key")


def test_test_plan_markdown_reads_like_a_release_checklist(small: KnowledgeBase) -> None:
    """The Markdown has the checklist, the steps, the evidence fields, the gate block and the learned tests."""
    text = small.test_plan(None, diff=CACHE_DIFF).to_markdown()
    assert text.startswith("# Test plan: diff of edge/nginx.conf\n")
    assert "## Release checklist\n\n- [ ] **t.cache.key** (high risk)" in text
    assert "**How to exercise it on nginx.**" in text and "1. Request /page on host a until it is a hit." in text
    assert "- `access_log` (host, uri, cache_status)" in text
    assert "```sh\npoet gate run --obligation t.cache.key\n```" in text
    assert "`tests/test_edge.py::test_cache_key_has_host` (line 30, from suite, confidence 0.80)" in text
    assert "\n\n\n" not in text and text.endswith("\n") and not text.endswith("\n\n")


def test_test_plan_says_when_nothing_covers_or_exercises(small: KnowledgeBase) -> None:
    """An obligation with no recipe and no learned test says so instead of leaving a blank."""
    plan = small.test_plan("the token signature check is skipped")
    item = next(i for i in plan.items if i.id == "t.jwt.verified")
    assert item.exercise == [] and "No recipe in the catalog exercises it yet" in item.exercise_note
    text = plan.to_markdown()
    assert "No test of yours exercises it: a gap to close." in text


def test_empty_plan_for_a_change_that_matches_nothing(small: KnowledgeBase) -> None:
    """A change that matches nothing gives a plan with no items that says so, not an empty file."""
    plan = small.test_plan("rename the marketing banner colour")
    assert plan.items == [] and plan.message.startswith("no obligation matched")
    text = plan.to_markdown()
    assert "**no obligation matched" in text and "That is not proof that it is safe" in text


def test_runbook_signals_and_failure_modes(small: KnowledgeBase) -> None:
    """Signals hold log fields with proxy formats, PromQL, captures; each failure mode has the four answers."""
    book = small.runbook(obligations=["t.cache.key", "t.timeout.enforced"], component="nginx")
    assert book.components == ["nginx"]
    fields = {f.field: f for f in book.signals.access_log}
    assert fields["cache_status"].nginx == "$upstream_cache_status" and fields["host"].needed_by == ["t.cache.key"]
    assert book.signals.log_formats == {"nginx": (
        "log_format poet escape=json "
        """'{"host":"$host","uri":"$request_uri","cache_status":"$upstream_cache_status"}';""")}
    assert book.signals.metrics[0].query.startswith("sum(rate(cache_hits_total[5m]))")
    commands = [c.command for c in book.signals.captures]
    assert commands[0].startswith("tcpdump -i any -nn -A 'tcp port 8080'")  # from the catalog
    assert any(c.startswith("curl -sS -D -") for c in commands)  # derived from the http_capture evidence
    modes = {m.id: m for m in book.failure_modes}
    assert modes["t.cache_collision"].mitigation == ["Purge the cache, then add the host to the key."]
    assert modes["t.cache_collision"].escalation == "Page the edge owner."
    text = book.to_markdown()
    assert "```promql\n  sum(rate(cache_hits_total[5m]))" in text
    assert "### Requests that never end (`t.hung_requests`)" in text
    assert "- Not recorded in the catalog." in text  # t.hung_requests has no symptoms: said, not invented
    assert "| cache_status | t.cache.key | `$upstream_cache_status` | - |" in text


def test_runbook_from_a_change_and_its_components(small: KnowledgeBase) -> None:
    """A runbook for a change covers its top obligations; an HAProxy diff gets HAProxy captures only."""
    diff = "--- a/haproxy.cfg\n+++ b/haproxy.cfg\n@@ -1,2 +1,2 @@\n defaults\n-    retries 2\n+    retries 9\n"
    book = small.runbook(change=None, diff=diff, top=1)
    assert [o.id for o in book.obligations] == ["t.retry.bounded"]
    assert book.components == ["haproxy"] and book.change is not None
    assert [c.component for c in book.signals.captures] == ["haproxy"]
    assert book.title == "Runbook: diff of haproxy.cfg"


def test_generated_examples_match_the_docs(kb_path: Path) -> None:
    """docs/examples/TESTPLAN.cache-change.md and observability_runbook.md equal a fresh generation.

    Regenerate them with `python -m poetkb.plans.examples` when the catalog or the templates change.
    """
    generated = render_examples(kb_path)
    assert set(generated) == {"TESTPLAN.cache-change.md", "observability_runbook.md"}
    for name, text in generated.items():
        on_disk = (examples_dir() / name).read_text(encoding="utf-8")
        assert on_disk == text, f"docs/examples/{name} drifted: run python -m poetkb.plans.examples"


def test_generation_is_deterministic(kb_path: Path) -> None:
    """Two generations are byte-identical (no timestamps, no unordered sets) and name the cache change."""
    first = render_examples(kb_path)
    assert render_examples(kb_path) == first
    plan = first["TESTPLAN.cache-change.md"]
    assert plan.startswith("# Test plan: Serve each language its own cached page")
    assert "proxy_cache_key changed from" in plan and "cache.vary.honored" in plan

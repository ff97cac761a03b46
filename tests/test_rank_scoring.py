"""Ranking mechanics on a small test catalog: rules, graph paths, learned tests, components, determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import poetkb
from poetkb import store
from poetkb.catalog import load_catalog
from poetkb.errors import InputError, UnknownEntity
from poetkb.kb import KnowledgeBase

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rank"
CATALOG = FIXTURES / "catalog"


def nginx_diff(old: str, new: str) -> str:
    return (
        "--- a/edge/nginx.conf\n+++ b/edge/nginx.conf\n@@ -1,3 +1,3 @@\n location / {\n"
        f"-    {old}\n+    {new}\n }}\n"
    )


@pytest.fixture(scope="module")
def small_kb_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base built from the ranking test catalog."""
    path = tmp_path_factory.mktemp("rank") / "kb.sqlite"
    store.build(load_catalog(CATALOG), path, source=str(CATALOG))
    return path


@pytest.fixture
def small(small_kb_file: Path) -> Iterator[KnowledgeBase]:
    base = poetkb.open(small_kb_file)
    yield base
    base.close()


def test_directive_rule_ranks_first_with_file_line_and_learned_test(small: KnowledgeBase) -> None:
    """A changed proxy_cache_key ranks the cache-key obligation first; why names the rule, the line and the test."""
    ranking = small.rank(None, diff=nginx_diff('proxy_cache_key "$host$uri";', 'proxy_cache_key "$uri";'))
    top = ranking.obligations[0]
    assert top.id == "t.cache.key"
    assert [r.rule for r in top.why.rules] == ["t.nginx.cache_key"]
    assert top.why.rules[0].where == ["edge/nginx.conf:2 (proxy_cache_key changed)"]
    assert top.why.paths[0].nodes == ["change", "rule:t.nginx.cache_key", "obligation:t.cache.key"]
    assert [t.test for t in top.why.own_tests] == ["test_cache_key_has_host"]
    assert any("Rule t.nginx.cache_key (directive) matched 'proxy_cache_key' edge/nginx.conf:2" in s
               for s in top.why.sentences)
    assert any("tests/test_edge.py::test_cache_key_has_host" in s for s in top.why.sentences)


def test_rule_to_failure_mode_spreads_to_the_guarding_obligation(small: KnowledgeBase) -> None:
    """An HAProxy retries rule maps to a failure mode; the graph path runs change -> rule -> failure mode -> obligation."""
    diff = "--- a/haproxy.cfg\n+++ b/haproxy.cfg\n@@ -1,2 +1,2 @@\n defaults\n-    retries 2\n+    retries 9\n"
    top = small.rank(None, diff=diff).obligations[0]
    assert top.id == "t.retry.bounded"
    assert ["change", "rule:t.haproxy.retries", "failure_mode:t.retry_storm", "obligation:t.retry.bounded"] in [
        p.nodes for p in top.why.paths]
    assert any("through failure mode 'Retry storm'" in s for s in top.why.sentences)


def test_wildcard_directive_terms_match_every_variant(small: KnowledgeBase) -> None:
    """A rule term proxy_next_upstream* fires on proxy_next_upstream_tries."""
    ranking = small.rank(None, diff=nginx_diff("proxy_next_upstream_tries 2;", "proxy_next_upstream_tries 0;"))
    assert ranking.obligations[0].id == "t.retry.bounded"
    assert ranking.obligations[0].why.rules[0].terms == ["proxy_next_upstream_tries"]


def test_keyword_rule_and_related_obligation(small: KnowledgeBase) -> None:
    """A keyword in the description ranks its obligation; a related obligation follows, explained as related."""
    ranking = small.rank("requests hang when the upstream stalls")
    ids = [r.id for r in ranking.obligations]
    assert ids[0] == "t.timeout.enforced"
    assert ranking.obligations[0].why.rules[0].terms == ["hang"]
    related = next(r for r in ranking.obligations if r.id == "t.retry.bounded")
    assert "related" in related.why.channels
    assert any("It is related to obligation t.timeout.enforced" in s for s in related.why.sentences)


def test_identifier_rule_on_code_diff(small: KnowledgeBase) -> None:
    """A code diff turning off verify_signature ranks the JWT obligation through the identifier rule and regex."""
    diff = (
        "--- a/app/auth.py\n+++ b/app/auth.py\n@@ -1,2 +1,2 @@\n def user(token, key):\n"
        "-    return jwt.decode(token, key, algorithms=['RS256'])\n"
        "+    return jwt.decode(token, options={'verify_signature': False})\n"
    )
    top = small.rank(None, diff=diff).obligations[0]
    assert top.id == "t.jwt.verified"
    assert set(top.why.rules[0].terms) >= {"verify_signature", "jwt.decode"}


def test_text_similarity_alone_finds_and_explains(small: KnowledgeBase) -> None:
    """With no rule firing, TF-IDF similarity still ranks by meaning and lists the shared words."""
    top = small.rank("the signature of the bearer token is no longer checked").obligations[0]
    assert top.id == "t.jwt.verified" and not top.why.rules
    assert "signature" in top.why.terms
    assert top.why.channels["text"] > 0


def test_no_match_is_an_honest_empty_answer(small: KnowledgeBase) -> None:
    """A change nothing matches returns no obligation and a message saying what was understood."""
    ranking = small.rank("rename the marketing banner colour")
    assert ranking.obligations == [] and not ranking.matched
    assert ranking.message.startswith("no obligation matched: understood Description: rename the marketing banner")


def test_component_that_does_not_apply_ranks_lower(small: KnowledgeBase) -> None:
    """Naming a component lowers obligations that do not apply to it, and the why says so."""
    free = {r.id: r for r in small.rank("token signature and request timeout").obligations}
    scoped = {r.id: r for r in small.rank("token signature and request timeout", component="nginx").obligations}
    assert scoped["t.jwt.verified"].score < free["t.jwt.verified"].score
    assert scoped["t.jwt.verified"].why.component_fit == "off"
    assert any("does not list nginx" in s for s in scoped["t.jwt.verified"].why.sentences)
    assert scoped["t.timeout.enforced"].why.component_fit == "applies"


def test_unknown_component_and_bad_top(small: KnowledgeBase) -> None:
    """An unknown component is UnknownEntity naming the known ones; --top below 1 is an InputError."""
    with pytest.raises(UnknownEntity) as caught:
        small.rank("anything", component="nginks")
    assert "unknown component 'nginks'" in str(caught.value) and "nginx" in str(caught.value)
    with pytest.raises(InputError, match="at least 1"):
        small.rank("anything", top=0)


def test_scores_are_ordered_bounded_and_top_limits(small: KnowledgeBase) -> None:
    """Scores lie in (0, 1], best first with ties on id, and --top cuts the list."""
    ranking = small.rank("cache key host retries timeout token signature", top=10)
    scores = [(-r.score, r.id) for r in ranking.obligations]
    assert scores == sorted(scores) and all(0 < r.score <= 1 for r in ranking.obligations)
    assert len(small.rank("cache key host retries timeout token signature", top=2).obligations) == 2


def test_ranking_is_deterministic_across_processes(small_kb_file: Path) -> None:
    """The same change gives byte-identical JSON in this process and in a fresh one."""
    code = (
        "import sys, poetkb; kb = poetkb.open(sys.argv[1]);"
        "print(kb.rank('retries and the cache key host', component='nginx').model_dump_json())"
    )
    outputs = [subprocess.run([sys.executable, "-c", code, str(small_kb_file)], capture_output=True, text=True,
                              check=True, timeout=120).stdout for _ in range(2)]
    with poetkb.open(small_kb_file) as kb:
        here = kb.rank("retries and the cache key host", component="nginx").model_dump_json()
    assert outputs[0] == outputs[1] == here + "\n"
    assert json.loads(here)["obligations"]

"""Cited RFC sections and documentation anchors are checked offline against knowledge/references.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb.catalog import check_catalog, load_catalog, shipped_catalog_root
from poetkb.cli import main
from poetkb.models import Reference
from poetkb.verify.references import check_reference, check_references, load_index

ROOT = shipped_catalog_root()
HAPROXY = "https://docs.haproxy.org/2.6/configuration.html"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def copy_catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    for part in ("obligations", "mappings", "knowledge/packs", "knowledge/probes"):
        shutil.copytree(ROOT / part, root / part)
    shutil.copy(ROOT / "knowledge/references.yaml", root / "knowledge/references.yaml")
    return root


def check(title: str, url: str) -> list[str]:
    index, problems = load_index(ROOT)
    assert index is not None and not problems
    ref = Reference(title=title, url=url)
    doc = next(d for d in index.documents if any(url.startswith(u) for u in d.urls))
    return check_reference(doc, ref)


def test_every_shipped_reference_matches_the_index() -> None:
    """Every reference of the shipped catalog to an indexed document names a section or anchor that exists."""
    result = check_references(load_catalog(ROOT))
    assert result.problems == []
    assert result.checked >= 150


def test_a_wrong_haproxy_section_is_caught_by_kb_check(tmp_path: Path) -> None:
    """Citing "Custom log format" as HAProxy 2.6 section 8.2.4 (it is 8.2.6) fails `poet kb check` with exit 2."""
    root = copy_catalog(tmp_path)
    path = root / "obligations/observability.yaml"
    text = path.read_text()
    assert "configuration.html#8.2.6" in text
    path.write_text(text.replace("configuration.html#8.2.6", "configuration.html#8.2.4", 1))
    code, _, err = invoke("kb", "check", "--from", str(root))
    assert code == 2
    assert "obligations/observability.yaml" in err
    assert "section 8.2.4 of HAProxy 2.6 Configuration Manual is 'HTTPS log format', not 'Custom log format'" in err
    code, _, err = invoke("kb", "verify", "--from", str(root), "--references")
    assert code == 2 and "8.2.4" in err


@pytest.mark.parametrize(("title", "url", "expected"), [
    ("RFC 9110 section 7.6.9, Connection", "https://www.rfc-editor.org/rfc/rfc9110#section-7.6.9",
     "section 7.6.9 is not in the index of RFC 9110"),
    ("RFC 9111 section 3.5, Storing Responses to Authenticated Requests",
     "https://www.rfc-editor.org/rfc/rfc9111#section-4.2", "the title cites section 3.5 but the link opens section 4.2"),
    ("RFC 9112 section 6.1, Message Body Length", "https://www.rfc-editor.org/rfc/rfc9112#section-6.1",
     "section 6.1 of RFC 9112, HTTP/1.1 is 'Transfer-Encoding', not 'Message Body Length'"),
    ("HAProxy 2.6 configuration, retry-on", f"{HAPROXY}#4.2-retry_on", "section 4.2 has no keyword 'retry_on'"),
    ("HAProxy 2.6 configuration, Timing events", f"{HAPROXY}#8.42", "section 8.42 does not exist in HAProxy 2.6"),
    ("NGINX upstream module, server max_conns", "https://nginx.org/en/docs/http/ngx_http_upstream_module.html#max_conns",
     "anchor #max_conns is not in the index"),
])
def test_wrong_sections_and_anchors_are_named(title: str, url: str, expected: str) -> None:
    """Each kind of wrong citation is reported with what is wrong about it."""
    problems = check(title, url)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(("title", "url"), [
    ("RFC 9110 section 12.5.5, Vary", "https://www.rfc-editor.org/rfc/rfc9110#field.vary"),
    ("RFC 9111 section 2, Overview of Cache Operation (primary cache key)", "https://www.rfc-editor.org/rfc/rfc9111#section-2"),
    ("HAProxy 2.6 configuration, Custom log format", f"{HAPROXY}#8.2.6"),
    ("HAProxy 2.6 configuration, option redispatch", f"{HAPROXY}#4.2-option%20redispatch"),
    ("NGINX proxy module, proxy_cache_use_stale",
     "https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_cache_use_stale"),
])
def test_right_citations_pass(title: str, url: str) -> None:
    """Correct sections, field anchors, keyword anchors and page anchors raise nothing."""
    assert check(title, url) == []


def test_unindexed_documents_are_counted_not_guessed(tmp_path: Path) -> None:
    """A reference to a document the index does not hold is listed as unindexed, never flagged as wrong."""
    result = check_references(load_catalog(ROOT))
    assert any("rfc7519" in u for u in result.unindexed)
    code, out, _ = invoke("kb", "verify", "--references")
    assert code == 0 and "references checked against the index" in out


def test_a_malformed_index_is_a_catalog_problem(tmp_path: Path) -> None:
    """An index entry of the wrong shape is reported with its file, not a traceback."""
    root = copy_catalog(tmp_path)
    (root / "knowledge/references.yaml").write_text("documents:\n  - id: x\n    title: y\n")
    _, problems = check_catalog(root)
    assert any(p.file == "knowledge/references.yaml" and "urls" in (p.field or "") for p in problems), problems

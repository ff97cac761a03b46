"""Understanding a change: free text, NGINX/HAProxy/code diffs, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from poetkb.errors import InputError
from poetkb.rank.change import read_diff_file, understand
from poetkb.rank.diff import parse_unified_diff

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "rank"
DIFFS = FIXTURES / "diffs"
BAD = FIXTURES / "bad"


def diff_text(name: str) -> str:
    return (DIFFS / name).read_text(encoding="utf-8")


def test_nginx_diff_gives_directives_with_old_and_new_values() -> None:
    """A changed directive pairs its removed and added lines into one change with both values and the new line."""
    summary = understand(None, diff_text("nginx-read-timeout.diff"))
    assert summary.source == "diff" and summary.components == ["nginx"]
    assert summary.files[0].kind == "nginx" and summary.files[0].path == "nginx/api.conf"
    by_name = {d.name: d for d in summary.directives}
    assert by_name["proxy_read_timeout"].action == "changed"
    assert (by_name["proxy_read_timeout"].old, by_name["proxy_read_timeout"].new) == ("30s", "3600s")
    assert by_name["proxy_read_timeout"].line == 4
    assert by_name["proxy_send_timeout"].action == "added" and by_name["proxy_send_timeout"].new == "3600s"
    assert "proxy_pass" not in by_name  # context lines are not changes


def test_nginx_removed_and_added_directives_of_different_names() -> None:
    """A directive only on a minus line is 'removed' with its old value; hash -> least_conn are two changes."""
    summary = understand(None, diff_text("nginx-hash-upstream.diff"))
    actions = {(d.name, d.action, d.old, d.new) for d in summary.directives}
    assert actions == {("hash", "removed", "$cookie_session consistent", None), ("least_conn", "added", None, "")}


def test_haproxy_compound_keywords_keep_their_first_argument() -> None:
    """HAProxy `option redispatch` and `timeout server` are directive names; values are the rest of the line."""
    retries = understand(None, diff_text("haproxy-retries.diff"))
    assert retries.components == ["haproxy"]
    names = {d.name: d for d in retries.directives}
    assert names["retries"].action == "changed" and (names["retries"].old, names["retries"].new) == ("2", "10")
    assert names["option redispatch"].action == "added"
    timeout = understand(None, diff_text("haproxy-timeout-server.diff"))
    changed = {d.name: d for d in timeout.directives}
    assert (changed["timeout server"].old, changed["timeout server"].new) == ("30s", "10m")
    assert changed["timeout queue"].action == "added"


def test_haproxy_server_lines_pair_by_server_name() -> None:
    """Removing `check` from two server lines gives two changed `server` directives, not four add/removes."""
    summary = understand(None, diff_text("haproxy-health-checks.diff"))
    servers = [d for d in summary.directives if d.name == "server"]
    assert [d.action for d in servers] == ["changed", "changed"]
    assert servers[0].old.startswith("api1") and servers[0].new == "api1 10.0.1.1:8080"
    assert {d.name for d in summary.directives if d.action == "removed"} >= {"option httpchk", "http-check expect"}


def test_code_diff_gives_identifiers_and_imports() -> None:
    """A Python diff yields its changed identifiers and imports; config directives are not looked for."""
    summary = understand(None, diff_text("py-client-retry.diff"))
    assert summary.files[0].kind == "code" and summary.files[0].language == "python"
    assert summary.directives == [] and summary.components == []
    assert {"tenacity", "tenacity.retry", "tenacity.stop_after_attempt"} <= set(summary.imports)
    assert {"retry", "stop_after_attempt", "timeout"} <= set(summary.identifiers)
    assert "import" not in summary.identifiers and "def" not in summary.identifiers


def test_go_imports_and_file_kinds() -> None:
    """Go import blocks are read; YAML is config, Markdown is docs, an unknown .conf is sniffed by content."""
    go = "--- a/main.go\n+++ b/main.go\n@@ -1,2 +1,3 @@\n import (\n+\t\"github.com/jackc/pgx/v5/pgxpool\"\n \t\"net/http\"\n"
    assert "github.com/jackc/pgx/v5/pgxpool" in understand(None, go).imports
    mixed = (
        "--- a/deploy/values.yaml\n+++ b/deploy/values.yaml\n@@ -1 +1 @@\n-poolSize: 20\n+poolSize: 5\n"
        "--- a/docs/notes.md\n+++ b/docs/notes.md\n@@ -1 +1 @@\n-old words\n+new words about caching\n"
        "--- a/edge/site.conf\n+++ b/edge/site.conf\n@@ -1,2 +1,2 @@\n server {\n-    proxy_pass http://a;\n"
        "+    proxy_pass http://b;\n"
    )
    summary = understand(None, mixed)
    assert [f.kind for f in summary.files] == ["config", "docs", "nginx"]
    assert "poolSize" in summary.identifiers and "caching" in summary.terms
    assert summary.directives[0].name == "proxy_pass" and summary.directives[0].action == "changed"


def test_free_text_and_a_diff_passed_as_text() -> None:
    """Free text keeps its words; a unified diff given as the description is read as a diff."""
    text = understand("Switch the cache key to include Accept-Language")
    assert text.source == "text" and text.terms[:3] == ["cache", "key", "include"]
    assert "Description: Switch the cache key to include Accept-Language" in text.describe()
    as_text = understand(diff_text("nginx-cache-key.diff"))
    assert as_text.source == "diff" and as_text.directives[0].name == "proxy_cache_key"
    both = understand("drop the host from the key", diff_text("nginx-cache-key.diff"), component="nginx")
    assert both.source == "text+diff" and both.components == ["nginx"]


def test_describe_names_directive_values_and_files() -> None:
    """The summary's sentences say which directive changed, from what to what, and where."""
    lines = understand(None, diff_text("nginx-cache-key.diff")).describe()
    assert any("proxy_cache_key changed from" in line and "deploy/nginx/conf.d/edge.conf:9" in line for line in lines)
    assert any(line.startswith("Diff of 1 file (1 nginx)") for line in lines)


@pytest.mark.parametrize(
    ("text", "diff", "message"),
    [
        ("", None, "[change] the change is empty"),
        ("   \n\t", "  \n", "[change] the change is empty"),
        ("bad\x00text", None, "holds binary data"),
    ],
)
def test_empty_or_binary_text_is_refused(text: str, diff: str | None, message: str) -> None:
    """An empty or binary description is an InputError that says what to pass instead."""
    with pytest.raises(InputError) as caught:
        understand(text, diff)
    assert message in str(caught.value)
    assert "--change" in str(caught.value) or "binary" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("binary-files.diff", "binary-files.diff:3: the diff changes a binary file"),
        ("git-binary.diff", "git-binary.diff:2: the diff changes a binary file"),
        ("not-a-diff.diff", "not-a-diff.diff: not a unified diff"),
        ("bad-header.diff", "bad-header.diff:3: malformed hunk header"),
        ("no-file-header.diff", "no-file-header.diff:1: hunk before any file header"),
        ("latin1.diff", "latin1.diff:4: the diff is not UTF-8 text"),
        ("nul.diff", "nul.diff: the diff holds binary data (NUL bytes)"),
        ("missing.diff", "missing.diff: no such diff file"),
    ],
)
def test_bad_diff_files_are_refused_with_file_and_line(name: str, message: str) -> None:
    """Each malformed, binary or missing diff raises InputError naming the file (and line where there is one)."""
    with pytest.raises(InputError) as caught:
        text, shown = read_diff_file(BAD / name)
        parse_unified_diff(text, name=shown)
    assert message in str(caught.value).replace(str(BAD) + "/", "")
    assert caught.value.hint


def test_every_fixture_diff_parses() -> None:
    """Every diff of the evaluation set is a valid unified diff with at least one changed line."""
    for path in sorted(DIFFS.glob("*.diff")):
        files = parse_unified_diff(path.read_text(encoding="utf-8"), name=path.name)
        assert files and all(f.lines for f in files), path.name

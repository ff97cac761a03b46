"""`--openapi OLD NEW`: an API description's differences (endpoints, auth, limits) read as the change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from poetkb.cli import main
from poetkb.errors import InputError
from poetkb.rank.openapi import compare, load_document

OLD = {
    "openapi": "3.0.3",
    "security": [{"bearer": []}],
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    "paths": {
        "/orders": {"get": {"responses": {"200": {"description": "ok"}, "429": {"description": "slow down"}}}},
        "/admin/users": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/legacy": {"post": {"responses": {"200": {"description": "ok"}}}},
    },
}
NEW_YAML = """openapi: 3.0.3
security:
  - bearer: []
components:
  securitySchemes:
    bearer: {type: http, scheme: bearer, bearerFormat: JWT}
    apiKey: {type: apiKey, in: header, name: X-Api-Key}
paths:
  /orders:
    get:
      x-timeout: 30s
      responses:
        "200": {description: ok}
  /admin/users:
    get:
      security: []
      responses:
        "200": {description: ok}
  /exports:
    post:
      responses:
        "202": {description: accepted}
"""


def test_compare_finds_endpoints_auth_and_limits(tmp_path: Path) -> None:
    """Added and removed operations, an endpoint made public, a new scheme, a timeout added, a 429 dropped."""
    new = tmp_path / "new.yaml"
    new.write_text(NEW_YAML, encoding="utf-8")
    diff = compare(OLD, load_document(new))
    found = {(f.kind, f.action, f.what): f.detail for f in diff.findings}
    assert found[("endpoint", "added", "POST /exports")] == ""
    assert found[("endpoint", "removed", "POST /legacy")] == "clients still calling it fail"
    assert found[("auth", "changed", "GET /admin/users")] == "now public: no authentication"
    assert found[("auth", "added", "security scheme apiKey")] == "apiKey"
    assert ("timeout", "added", "paths./orders.get.x-timeout") in found
    assert ("rate_limit", "removed", "paths./orders.get.responses.429") in found
    assert "- auth changed: GET /admin/users (now public: no authentication)" in diff.text


def test_rank_reads_an_openapi_change(kb_path: Path, tmp_path: Path) -> None:
    """`poet rank --openapi OLD NEW`: an endpoint made public ranks an auth obligation in the top 3."""
    old, new = tmp_path / "old.json", tmp_path / "new.yaml"
    old.write_text(json.dumps(OLD), encoding="utf-8")
    new.write_text(NEW_YAML, encoding="utf-8")
    result = CliRunner().invoke(main, ["--db", str(kb_path), "rank", "--openapi", str(old), str(new), "--top", "3",
                                       "--json"])
    assert result.exit_code == 0, result.output
    assert any(r["id"].startswith("auth.") for r in json.loads(result.output))


@pytest.mark.parametrize(
    ("text", "message"),
    [("openapi: [unclosed", "not JSON or YAML"), ("title: not an api\n", "not an OpenAPI document")],
)
def test_bad_documents_are_refused_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    """A document that does not parse or is not OpenAPI is an InputError naming the file."""
    path = tmp_path / "api.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        load_document(path)
    assert info.value.file == str(path)

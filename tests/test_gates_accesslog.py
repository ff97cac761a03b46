"""Access-log reading never crashes and accounts for every line, whatever bytes the log holds."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from poetkb.gates.accesslog import parse

records = st.dictionaries(st.sampled_from(["uri", "status", "request_time", "upstream_addr", "upstream_status",
                                           "upstream_response_time", "method", "host", "request_id"]),
                          st.one_of(st.integers(-5, 70000), st.floats(allow_nan=False, allow_infinity=False),
                                    st.text(max_size=30), st.none()), max_size=6)
lines = st.one_of(records.map(lambda r: json.dumps(r).encode()), st.binary(max_size=60),
                  st.text(max_size=40).map(str.encode))


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, max_size=12), st.booleans())
def test_every_line_is_a_record_a_problem_or_a_notice(chunks: list[bytes], final_newline: bool) -> None:
    """parse() never raises; each non-blank line becomes exactly one record, one problem, or one skipped notice."""
    body = [c.replace(b"\n", b" ").replace(b"\r", b" ") for c in chunks]
    data = b"\n".join(body) + (b"\n" if final_newline and body else b"")
    parsed = parse(data)
    non_blank = sum(1 for c in body if c.strip())
    assert len(parsed.records) + len(parsed.problems) + parsed.other == non_blank
    for record in parsed.records:
        assert isinstance(record.raw, dict)
        record.uri, record.status, record.request_time, record.upstream_addrs  # noqa: B018 - must not raise


@given(st.lists(records, min_size=1, max_size=8))
def test_json_lines_round_trip(items: list[dict[str, object]]) -> None:
    """Well-formed JSON lines all come back as records, in order, with their line numbers."""
    data = b"".join(json.dumps(item).encode() + b"\n" for item in items)
    parsed = parse(data)
    assert parsed.problems == [] and parsed.other == 0
    assert [r.raw for r in parsed.records] == items
    assert [r.line for r in parsed.records] == list(range(1, len(items) + 1))

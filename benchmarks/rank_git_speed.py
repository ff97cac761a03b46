"""Time `poet rank --git` on a large repository: 10,000 files, a change of about 2,000 diff lines.

Usage: python benchmarks/rank_git_speed.py [--files 10000] [--lines 2000] [--db KB] [--repeat 5]

Builds the repository in a temporary directory (Python modules, NGINX and HAProxy files, SQL
migrations, a requirements file), commits it on main, then changes files on a branch until the diff
holds about --lines added and removed lines. Prints the time to read the change from git and rank it
inside one process (median and max over --repeat runs, the knowledge base already open), and the time
of the whole `poet rank --git` process. The target is under 2 s for the whole process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
       "GIT_COMMITTER_EMAIL": "bench@localhost", "GIT_CONFIG_NOSYSTEM": "1"}

PY = '''import requests


def handler_{i}(request, db):
    """Handle request {i}."""
    rows = db.execute("SELECT id, total FROM orders WHERE customer_id = %s", (request.user,))
    return [dict(r) for r in rows]


def fetch_{i}(url):
    return requests.get(url, timeout=5)
'''
NGINX = '''server {{
    listen 80{n};
    location /svc{i}/ {{
        proxy_pass http://svc{i};
        proxy_read_timeout 10s;
        proxy_cache_key "$scheme$host$request_uri";
    }}
}}
'''


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=ENV, timeout=600)


def build(repo: Path, files: int, lines: int) -> int:
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        kind = i % 10
        if kind < 7:
            path = repo / "app" / f"pkg{i // 500}" / f"mod_{i}.py"
            text = PY.format(i=i)
        elif kind < 9:
            path = repo / "deploy" / "nginx" / f"site_{i}.conf"
            text = NGINX.format(i=i, n=i % 10)
        else:
            path = repo / "db" / "migrations" / f"{i:05d}_m.sql"
            text = f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, v text);\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (repo / "requirements.txt").write_text("requests==2.31.0\nhttpx==0.27.0\n", encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Initial import")
    git(repo, "checkout", "-q", "-b", "perf/timeouts")
    changed = 0
    i = 0
    while changed < lines and i < files:
        kind = i % 10
        if kind < 7:
            path = repo / "app" / f"pkg{i // 500}" / f"mod_{i}.py"
            text = path.read_text(encoding="utf-8").replace("timeout=5", "timeout=30").replace(
                "SELECT id, total", "SELECT id, amount")
            changed += 4
        elif kind < 9:
            path = repo / "deploy" / "nginx" / f"site_{i}.conf"
            text = path.read_text(encoding="utf-8").replace("10s", "600s")
            changed += 2
        else:
            path = repo / "db" / "migrations" / f"{i:05d}_m.sql"
            text = path.read_text(encoding="utf-8") + f"CREATE INDEX t{i}_v ON t{i} (v);\n"
            changed += 1
        path.write_text(text, encoding="utf-8")
        i += 1
    (repo / "requirements.txt").write_text("requests==2.32.3\nhttpx==0.28.1\n", encoding="utf-8")
    git(repo, "commit", "-q", "-am", "Longer timeouts for slow partners")
    return changed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", type=Path, help="knowledge base file (default: a fresh one from the shipped catalog)")
    args = parser.parse_args()

    import poetkb
    from poetkb.rank.gitchange import read_git

    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        started = time.perf_counter()
        changed = build(repo, args.files, args.lines)
        print(f"built {args.files} files, ~{changed} changed lines in {time.perf_counter() - started:.1f}s")
        db = args.db or Path(tmp) / "kb.sqlite"
        with poetkb.open(db) as kb:
            kb.rank("warm up")
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                change = read_git(repo)
                ranking = kb.rank(None, git=change, top=10)
                times.append(time.perf_counter() - started)
            diff_lines = sum(f.added + f.removed for f in ranking.change.files)
            print(f"diff: {len(ranking.change.files)} files, {diff_lines} changed lines; "
                  f"top: {', '.join(r.id for r in ranking.obligations[:3])}")
            print(f"read + rank in process: median {statistics.median(times):.3f}s max {max(times):.3f}s")
        poet = Path(sys.executable).with_name("poet")
        command = [str(poet), "--db", str(db), "rank", "--git", "--repo", str(repo), "--json"]
        process_times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, timeout=120)
            process_times.append(time.perf_counter() - started)
        print(f"whole `poet rank --git` process: median {statistics.median(process_times):.3f}s "
              f"max {max(process_times):.3f}s (target < 2 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

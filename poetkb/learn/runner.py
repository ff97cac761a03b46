"""Run the mining pipeline: discover, parse in parallel (or take from the cache), map, write atomically.

Order of a run, and why:

1. Discovery reads and hashes every test file (cheap) and looks the hashes up
   in the cache; only misses are parsed. A file whose stat (size, modification
   and change times, inode, device) is the one recorded when it was last hashed
   is not even read: its recorded hash is looked up (it is read after all if its
   extraction is no longer cached).
2. Misses are parsed over ``workers`` processes (default: the CPU count),
   forked with the extractor loaded, so no process imports libcst again. The
   workers die with this process: each asks the kernel for a parent-death
   signal (``PR_SET_PDEATHSIG``) as it starts, or, off Linux, watches its
   parent, so even a ``kill -9`` of the run leaves no parser behind. A progress
   bar shows on a terminal only. A process that dies (a parser crash) costs a
   retry of its files one by one; the file that kills a parser is skipped as
   ``crashed the parser``.
3. Units are assembled in a fixed order, data files they name are read (and
   cached by hash), and the mapper scores them against the knowledge base's
   obligations. Review decisions are applied.
4. Writes come last: the learned file goes to a temporary name; then one
   transaction stores the new cache rows and replaces this source's patterns,
   nodes and edges in the knowledge base, and the file is renamed into place
   inside it. An interrupted or failed run leaves the knowledge base and the
   learned file as they were; a temporary file a killed run left behind is
   removed by the next run.

The learned file is deterministic: the same suite, catalog and decisions give
byte-identical output (no timestamps; patterns sorted by id; run statistics
are reported to the caller but not written).
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from poetkb.errors import EnvironmentProblem, InputError, StoreError
from poetkb.learn import review
from poetkb.learn.discover import (
    MAX_FILE_BYTES,
    Discovery,
    Skipped,
    TestFile,
    content_hash,
    discover,
    git_commit,
    read_again,
    real_path,
)
from poetkb.learn.features import ExtractFailure, Extraction, FieldBag, MinedUnit, data_text, summary_terms
from poetkb.learn.memo import LearnCache, data_key, fingerprint, test_key
from poetkb.learn.results import LearnReport, LearnRunStats, LearnSummary, SkippedFile, SuiteRoot
from poetkb.models import LearnedPattern, ObligationMatch
from poetkb.safefile import read_bytes

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

#: Where learned files go when no --out is given (relative to the current directory).
DEFAULT_OUT = Path("knowledge") / "learned"
#: what a mined suite is to the user: their own (coverage) or a public one (reference examples)
ROLES = ("own", "reference")
#: Terms kept per pattern in the learned file.
MAX_TERMS = 12
#: Data files read per unit, and the size above which a data file is ignored.
MAX_DATA_REFS = 8
MAX_DATA_BYTES = MAX_FILE_BYTES
#: Below this many files to parse, parsing stays in this process (starting workers costs more).
MIN_PARALLEL_FILES = 8
_SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

Job = tuple[int, str, bool]


def default_source(paths: Sequence[Path]) -> str:
    """A source name for the first path: its git repository's directory name, else its own name."""
    try:
        first = real_path(Path(paths[0]))
    except OSError:
        first = Path(os.path.abspath(paths[0]))
    base = first if first.is_dir() else first.parent
    for directory in (base, *base.parents):
        if (directory / ".git").exists():
            base = directory
            break
    return normalise_source(base.name or "suite")


def normalise_source(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-.") or "suite"
    return cleaned


def check_source(name: str) -> str:
    if not _SOURCE_RE.match(name):
        raise InputError(
            f"source name {name!r} is not usable", field="--source",
            hint="use lowercase letters, digits, '.', '_' or '-' (it names the file <source>.json)",
        )
    return name


# -- parsing ----------------------------------------------------------------------------------------
def parse_files(
    jobs: Sequence[Job], *, workers: int, progress: bool = False
) -> dict[int, Extraction | ExtractFailure]:
    """Extraction results by job index, parsed in this process or over ``workers`` processes."""
    if not jobs:
        return {}
    from poetkb.learn import extract

    bar = _progress_bar(len(jobs), progress)
    results: dict[int, Extraction | ExtractFailure] = {}
    try:
        if workers <= 1 or len(jobs) < MIN_PARALLEL_FILES:
            for job in jobs:
                index, result = extract.mine_job(job)
                results[index] = result
                bar.update(1)
            return results
        _parse_parallel(jobs, workers, results, bar)
        return results
    finally:
        bar.close()


def _parse_parallel(jobs: Sequence[Job], workers: int, results: dict[int, Extraction | ExtractFailure],
                    bar: Any) -> None:
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from poetkb.learn import extract

    context = _mp_context()
    ordered = sorted(jobs, key=lambda j: -len(j[1]))  # largest first: the pool finishes evenly
    chunk = max(1, min(16, len(ordered) // (workers * 8)))
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=extract.worker_init,
                               initargs=(os.getpid(),))
    try:
        for index, result in pool.map(extract.mine_job, ordered, chunksize=chunk):
            results[index] = result
            bar.update(1)
    except BrokenProcessPool:
        pool.shutdown(wait=True)
        _retry_one_by_one(ordered, results, context, bar)
    except BaseException:
        _stop(pool)  # interrupted: drop the queued files and end the workers now
        raise
    else:
        pool.shutdown(wait=True)


def _retry_one_by_one(ordered: Sequence[Job], results: dict[int, Extraction | ExtractFailure], context: Any,
                      bar: Any) -> None:
    """A parser process died: parse what is left one file per process, to find and skip the culprit."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from poetkb.learn import extract

    crashes = successes = 0
    for job in ordered:
        if job[0] in results:
            continue
        try:
            with ProcessPoolExecutor(1, mp_context=context, initializer=extract.worker_init,
                                     initargs=(os.getpid(),)) as single:
                index, result = single.submit(extract.mine_job, job).result()
            successes += 1
        except BrokenProcessPool:
            crashes += 1
            if crashes >= 3 and not successes:
                raise EnvironmentProblem(
                    "parser processes die as soon as they start",
                    hint="run with --workers 1 to parse in this process and see the error",
                ) from None
            index, result = job[0], ExtractFailure("crashed the parser", "the parser process died")
        results[index] = result
        bar.update(1)


def _stop(pool: Any) -> None:
    """Cancel queued work and end the worker processes without waiting for them."""
    pool.shutdown(wait=False, cancel_futures=True)
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # earlier Pythons: no public way
        process.terminate()
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.join(timeout=5)


def _mp_context() -> Any:
    """``fork`` where there is one: workers start at once, inherit the loaded extractor, re-import nothing.

    The parent holds no threads when it forks (the progress bar runs without its
    monitor thread) and the children never touch its SQLite connection.
    """
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _progress_bar(total: int, enabled: bool) -> Any:
    if not (enabled and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    class _Bar(tqdm):  # type: ignore[type-arg]
        monitor_interval = 0  # no monitor thread: the pool forks from this process

    return _Bar(total=total, unit="file", desc="mining", file=sys.stderr, leave=False)


class _NoBar:
    def update(self, _count: int) -> None:
        pass

    def close(self) -> None:
        pass


# -- assembly ---------------------------------------------------------------------------------------
class _Assembler:
    """Builds pattern inputs (ids, provenance, feature fields) from extraction records."""

    def __init__(self, source: str, cache: LearnCache) -> None:
        self.source = source
        self.cache = cache
        self.data_files: set[str] = set()
        self.ids: Counter[str] = Counter()
        self.words: dict[Path, str] = {}  # data file -> its words, read once per run
        self.boundaries: dict[Path, Path | None] = {}  # suite root -> its real path
        self.resolved: dict[tuple[Path, Path, str], Path | None] = {}  # (directory, boundary, ref) -> data file
        self.real_dirs: dict[Path, Path | None] = {}  # a test file's directory -> its real path
        self.bases: dict[tuple[Path, Path], list[str]] = {}  # (directory, boundary) -> where refs are looked up
        self.preloaded: set[Path] = set()  # suite roots whose cached data-file words were read ahead

    def units(self, found: TestFile, record: Extraction, commit: str | None) -> list[MinedUnit]:
        """The units of one file's extraction, placed in the suite, with the file's and data files' fields."""
        rel = found.rel
        stem = rel.rsplit("/", 1)[-1].removesuffix(".py")
        file_bag = FieldBag()
        file_bag.add("path", rel.removesuffix(".py"))
        file_bag.add("module", record.module_doc)
        file_fields = file_bag.render()
        out = []
        for unit in record.units:
            fields = {**unit.fields, **file_fields}
            if unit.kind == "file":
                bag = FieldBag()
                bag.add("name", stem)
                fields["name"] = bag.render().get("name", "")
            data = self.data_words(found, unit.refs)
            if data:
                fields["data"] = data
            base = f"{self.source}:{rel}" + (f"::{unit.test}" if unit.test else "")
            self.ids[base] += 1
            pid = base if self.ids[base] == 1 else f"{base}#{self.ids[base]}"
            out.append(MinedUnit(
                id=pid, file=rel, test=unit.test, kind=unit.kind, line=unit.line,
                end_line=unit.end_line, summary=unit.summary, fields=fields,
                commit=commit, content_hash=found.content_hash,
            ))
        return out

    def data_words(self, found: TestFile, refs: Iterable[str]) -> str:
        """Words of the data files a unit names that exist beside it, inside the suite."""
        refs = list(refs)
        if not refs:
            return ""
        if found.root not in self.boundaries:
            try:
                self.boundaries[found.root] = real_path(found.root if found.root.is_dir() else found.root.parent)
            except OSError:
                self.boundaries[found.root] = None
        boundary = self.boundaries[found.root]
        if boundary is None:
            return ""
        if boundary not in self.preloaded:
            self.preloaded.add(boundary)
            self.cache.preload_data(str(boundary))
        start = found.path.parent
        if start not in self.real_dirs:
            self.real_dirs[start] = _real_dir(found, boundary)
        texts: list[str] = []
        seen: set[Path] = set()
        for ref in refs[: MAX_DATA_REFS * 4]:
            where = (start, boundary, ref)
            if where not in self.resolved:  # units of one file name the same files: resolve each once per run
                self.resolved[where] = self._resolve(*where)
            path = self.resolved[where]
            if path is None or path in seen:
                continue
            seen.add(path)
            words = self._data_file_words(path, boundary)
            if words:
                texts.append(words)
            if len(texts) >= MAX_DATA_REFS:
                break
        return " | ".join(texts)

    def _resolve(self, start: Path, boundary: Path, ref: str) -> Path | None:
        """The data file ``ref`` names: looked up from ``start`` and its parents up to ``boundary``, inside it."""
        if start not in self.real_dirs:
            try:
                self.real_dirs[start] = real_path(start)
            except OSError:
                self.real_dirs[start] = None
        directory = self.real_dirs[start]
        if directory is None:
            return None
        # Paths here are resolved and absolute, so "strictly below boundary" is a prefix test on the text
        # and the parents are the text's dirnames (the same answers as ``boundary in path.parents`` and
        # ``path.parents``, without building Path objects: this runs for every reference of every unit).
        text = str(boundary)
        below = text if text.endswith("/") else f"{text}/"
        key = (directory, boundary)
        bases = self.bases.get(key)
        if bases is None:
            bases, current = [str(directory)], str(directory)
            while (parent := os.path.dirname(current)) != current:
                if parent == text or parent.startswith(below):
                    bases.append(parent)
                current = parent
            self.bases[key] = bases
        for base in bases:
            try:
                # One stat first: most bases do not hold the file, and a path that does not stat does not
                # resolve either (resolving costs a system call per directory level).
                os.stat(os.path.join(base, ref).rstrip("/") or "/")
                candidate = _real_below(base, ref)
            except (OSError, ValueError):  # missing, a loop, a NUL byte
                continue
            if candidate.suffix == ".py" or not str(candidate).startswith(below):
                continue
            if candidate.is_file():
                return candidate
        return None

    def _data_file_words(self, path: Path, boundary: Path) -> str:
        if path not in self.words:
            self.words[path] = self._read_data_file(path, boundary)
        return self.words[path]

    def _read_data_file(self, path: Path, boundary: Path) -> str:
        """Words of one data file: a regular file inside the suite of at most MAX_DATA_BYTES, else nothing.

        A file whose stat is unchanged since it was last hashed is not read again
        (:meth:`LearnCache.known_hash`): its words come from the cache by that hash.
        """
        rel = path.relative_to(boundary).as_posix()
        try:
            before = os.stat(path)
        except OSError:
            return ""
        known = self.cache.known_hash(str(path), before) if before.st_size <= MAX_DATA_BYTES else None
        if known is not None:
            cached = self.cache.get(data_key(known))
            if cached is not None:
                self.data_files.add(rel)
                return str(cached)
        try:
            data = read_bytes(path, limit=MAX_DATA_BYTES, root=boundary)
        except (InputError, OSError, RuntimeError):
            return ""
        digest = content_hash(data)
        try:
            after = os.stat(path)
        except OSError:
            after = None
        if after is not None and _same_stat(before, after) and len(data) == after.st_size:
            self.cache.remember_hash(str(path), after, digest)
        key = data_key(digest)
        cached = self.cache.get(key)
        self.data_files.add(rel)
        if cached is not None:
            return str(cached)
        try:
            words = data_text(data.decode("utf-8"))
        except UnicodeDecodeError:
            words = ""
        self.cache.put(key, rel, words)
        return words


def _real_dir(found: TestFile, boundary: Path) -> Path | None:
    """``real_path`` of the directory holding ``found``, given ``boundary``, the real path of the directory it
    was found under: only the parts of its path below that directory are checked for links."""
    try:
        if found.root == found.path:  # a file given as PATH: boundary is its directory's real path
            return boundary
        parent = found.rel.rpartition("/")[0]
        return _real_below(str(boundary), parent) if parent else boundary
    except (OSError, ValueError):
        return None


def _real_below(base: str, ref: str) -> Path:
    """``real_path(base / ref)`` for a ``base`` that is already a real path: only ``ref``'s own parts are checked.

    A plain relative ``ref`` (no ``.``, ``..`` or empty parts) none of whose parts is a link resolves to the
    joined text; anything else goes through the full :func:`real_path`. The same answer, with a system call per
    part of ``ref`` instead of one per directory level of the whole path.
    """
    parts = ref.split("/")
    if ref.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return real_path(Path(base) / ref)
    current = base
    for part in parts:
        current = os.path.join(current, part)
        if stat.S_ISLNK(os.lstat(current).st_mode):
            return real_path(Path(base) / ref)
    return Path(current)


def _same_stat(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino, a.st_dev) == (
        b.st_size, b.st_mtime_ns, b.st_ctime_ns, b.st_ino, b.st_dev)


def _summary_text(unit: MinedUnit) -> str:
    if unit.summary:
        return unit.summary
    name = unit.fields.get("name", "")
    cls = unit.fields.get("cls", "")
    return f"{name} ({cls})" if cls else name


# -- the run ----------------------------------------------------------------------------------------
def learn(
    kb: Knowledge,
    paths: Sequence[str | Path],
    *,
    source: str | None = None,
    out_dir: str | Path | None = None,
    workers: int | None = None,
    progress: bool = False,
    store: bool = True,
    write_file: bool = True,
    mapped_only: bool = False,
    role: Literal["own", "reference"] = "own",
    repository: str | None = None,
    on_phase: Callable[[str], None] | None = None,
) -> LearnReport:
    """Mine test suites into learned patterns; see the module docstring for the steps and guarantees.

    ``store`` puts the patterns in the knowledge base, ``write_file`` writes
    ``<out_dir>/<source>.json``; ``mapped_only`` keeps only mapped units in both (for
    committed knowledge files; the summary still counts every unit). ``role`` says what
    the suite is to the user: ``own`` (their tests: coverage) or ``reference`` (a public
    suite: examples of how others test an obligation, never coverage).
    """
    if role not in ROLES:
        raise InputError(f"role {role!r} is not known", field="--role",
                         hint="use `own` for your own suites (coverage) or `reference` for public ones (examples)")
    if repository is not None and not re.fullmatch(r"https://\S{1,292}", repository):
        raise InputError(f"repository {repository!r} is not an https:// address", field="--repository",
                         hint="pass the web address of the suite's repository, e.g. https://git.example.com/team/app")
    started = time.perf_counter()
    roots = [Path(p) for p in paths]
    if source is not None:
        check_source(source)
    cache = LearnCache(kb)
    gathered = _gather(kb, roots, source, cache, workers=workers, progress=progress, on_phase=on_phase)
    name, found, jobs, units, skipped, commits, assembler, _ = gathered
    patterns = _map(kb, name, units, role, cache)
    if repository is not None:
        patterns = [p.model_copy(update={"repository": repository}) for p in patterns]
    summary = _summarise(kb, roots, commits, found, skipped, patterns)
    stats = LearnRunStats(
        files_parsed=len(jobs), files_cached=len(found.files) - len(jobs), data_files=len(assembler.data_files),
        workers=gathered.workers if len(jobs) >= MIN_PARALLEL_FILES else 1,
    )
    kept = [p for p in patterns if p.obligations] if mapped_only else patterns
    report = LearnReport(source=name, role=role, summary=summary, run=stats, patterns=kept)

    (on_phase or (lambda _: None))("writing")
    target = (Path(out_dir) if out_dir is not None else Path.cwd() / DEFAULT_OUT) / f"{name}.json"
    _commit_results(kb, report, cache, target if write_file else None, store=store)
    return report.model_copy(update={
        "out_file": str(target) if write_file else None,
        "stored_in_kb": store,
        "run": stats.model_copy(update={"seconds": round(time.perf_counter() - started, 3)}),
    })


class _Gathered(NamedTuple):
    name: str
    found: Discovery
    jobs: list[Job]
    units: list[MinedUnit]
    skipped: list[Skipped]
    commits: dict[Path, str | None]
    assembler: _Assembler
    workers: int


def _gather(kb: Knowledge, roots: list[Path], source: str | None, cache: LearnCache, *, workers: int | None,
            progress: bool, on_phase: Callable[[str], None] | None) -> _Gathered:
    """Discover, parse (or take from the cache) and assemble the units of ``roots``, before any mapping."""
    # bad PATHs (missing, a loop, unreadable) fail here, before anything else
    found = discover(roots, known_hash=cache.known_hash)
    name = check_source(source if source is not None else default_source(roots))
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    phase = on_phase or (lambda _: None)

    keys = [test_key(f.content_hash, f.script_style) for f in found.files]
    cached = cache.get_many(keys)
    if any(f.text is None and k not in cached for f, k in zip(found.files, keys, strict=True)):
        found = _read_uncached(found, keys, cached)
        keys = [test_key(f.content_hash, f.script_style) for f in found.files]
        cached.update(cache.get_many([k for k in keys if k not in cached]))
    for test_file in found.files:
        if test_file.stat is not None:  # read and hashed this run: its stat skips the read next time
            cache.remember_hash(test_file.key_path, test_file.stat, test_file.content_hash, test_file.hashed_at)
    jobs = [(i, f.text or "", f.script_style) for i, (f, k) in enumerate(zip(found.files, keys, strict=True))
            if k not in cached]
    phase(f"parsing {len(jobs)} of {len(found.files)} files")
    parsed = parse_files(jobs, workers=workers, progress=progress)
    for index, result in parsed.items():
        cache.put(keys[index], found.files[index].rel, result)
    records: list[Extraction | ExtractFailure] = [cached[k] if k in cached else parsed[i]
                                                  for i, k in enumerate(keys)]

    phase("mapping")
    commits = {root: git_commit(root) for root in roots}
    assembler = _Assembler(name, cache)
    skipped = list(found.skipped)
    units: list[MinedUnit] = []
    for test_file, record in zip(found.files, records, strict=True):
        if isinstance(record, ExtractFailure):
            skipped.append(Skipped(test_file.rel, record.reason, record.detail))
            continue
        units.extend(assembler.units(test_file, record, commits.get(test_file.root)))
    return _Gathered(name, found, jobs, units, skipped, commits, assembler, workers)


def mine_units(kb: Knowledge, paths: Sequence[str | Path], *, source: str | None = None,
               workers: int | None = None) -> list[MinedUnit]:
    """The units of a suite as the mapper sees them (id, file, test, kind, lines, feature fields), unmapped.

    The same discovery, parsing and assembly as :func:`learn`; new cache rows are
    written (so the next run parses nothing), nothing else is. For training and
    measuring the mapper (:mod:`poetkb.learn.training`).
    """
    if source is not None:
        check_source(source)
    cache = LearnCache(kb)
    gathered = _gather(kb, [Path(p) for p in paths], source, cache, workers=workers, progress=False, on_phase=None)
    with kb.transaction():
        cache.write()
    return gathered.units


def _read_uncached(found: Discovery, keys: Sequence[str], cached: dict[str, Any]) -> Discovery:
    """``found`` with the files listed unread whose extraction is not cached read now (or skipped if they
    cannot be read any more)."""
    files: list[TestFile] = []
    skipped = list(found.skipped)
    for test_file, key in zip(found.files, keys, strict=True):
        if test_file.text is not None or key in cached:
            files.append(test_file)
            continue
        again = read_again(test_file)
        if isinstance(again, Skipped):
            skipped.append(again)
        else:
            files.append(again)
    return Discovery(files=files, skipped=sorted(skipped, key=lambda s: (s.path, s.reason)),
                     bytes_read=found.bytes_read)


def _map(kb: Knowledge, source: str, units: list[MinedUnit],
         role: Literal["own", "reference"] = "own", cache: LearnCache | None = None) -> list[LearnedPattern]:
    decisions = kb.learn_decisions()
    patterns = []
    for unit, (matches, candidates, terms) in zip(units, _mapped(kb, source, units, cache), strict=True):
        taken = {m.id for m in matches}  # a class may map what its own name only hinted at
        candidates = [c for c in candidates if c.id not in taken]
        kept, near = review.apply_decisions(unit.id, matches, decisions, candidates=candidates)
        patterns.append(LearnedPattern(
            id=unit.id, source=source, role=role, file=unit.file, test=unit.test, kind=unit.kind,
            line=unit.line, end_line=unit.end_line, commit=unit.commit, content_hash=unit.content_hash,
            summary=_summary_text(unit), terms=terms, obligations=kept,
            candidates=[c.model_copy(update={"reasons": c.reasons[:2]}) for c in near],
        ))
    patterns.sort(key=lambda p: p.id)
    return patterns


Mapped = tuple[list[ObligationMatch], list[ObligationMatch], list[str]]


def _mapped(kb: Knowledge, source: str, units: list[MinedUnit],
            cache: LearnCache | None) -> list[Mapped]:
    """Per unit: (mapped obligations, candidates, summary terms), before review decisions.

    The result depends only on what :func:`mapping_key` covers, so with a cache it is
    taken from there when the key is known (a re-run over an unchanged suite builds no
    mapper, fits no TF-IDF), and stored there otherwise.
    """
    examples = known_examples(kb, source)
    key = mapping_key(units, kb.stored_data("obligations"), kb.stored_data("rules"), kb.stored_data("failure_modes"),
                      examples) if cache is not None else ""
    if cache is not None:
        stored = cache.get(key)
        if isinstance(stored, list) and len(stored) == len(units):
            try:
                return [([ObligationMatch.model_validate(m) for m in row["m"]],
                         [ObligationMatch.model_validate(c) for c in row["c"]],
                         [str(t) for t in row["t"]]) for row in stored]
            except (KeyError, TypeError, ValueError):  # a damaged row: map again
                pass
    from poetkb.learn.mapping import Mapper, aggregate_classes, split

    mapper = Mapper(kb.obligations(), kb.rules(), kb.failure_modes(), examples=examples)
    found = [split(m) for m in mapper.map([u.fields for u in units], groups=[u.file for u in units])]
    mapped = aggregate_classes(units, [m for m, _ in found])
    result = [(matches, candidates, summary_terms(unit.fields, cap=MAX_TERMS))
              for unit, matches, (_, candidates) in zip(units, mapped, found, strict=True)]
    if cache is not None:
        cache.put_run(source, key, [
            {"m": [m.model_dump(mode="json") for m in matches], "c": [c.model_dump(mode="json") for c in near],
             "t": terms} for matches, near, terms in result])
    return result


#: Modules whose code decides the mapping result (with the model file, when there is one).
MAPPER_MODULES = ("poetkb.learn.mapping", "poetkb.learn.learned", "poetkb.learn.features", "poetkb.text",
                  "poetkb.learn.runner")
_CODE: list[str] = []


def mapper_code_fingerprint() -> str:
    """SHA-256 over the source of :data:`MAPPER_MODULES` and the learned model file (read once per process).

    Keying cached mapping results by the code itself, not by a version number someone
    must remember to bump, means any change to the mapper maps again.
    """
    if not _CODE:
        import importlib

        from poetkb.learn import learned

        parts: list[bytes | str] = []
        for name in MAPPER_MODULES:
            module_file = getattr(importlib.import_module(name), "__file__", None)
            parts.append(Path(module_file).read_bytes() if module_file else name)
        model_path = getattr(learned, "DEFAULT_PATH", None)
        try:
            parts.append(Path(model_path).read_bytes() if model_path else b"")
        except OSError:
            parts.append(b"no model")
        _CODE.append(fingerprint(*parts))
    return _CODE[0]


def mapping_key(units: Sequence[MinedUnit], obligations: Sequence[str], rules: Sequence[str],
                modes: Sequence[str], examples: dict[str, list[str]]) -> str:
    """Cache key of a run's mapping result: everything the mapper reads, and the mapper's own code.

    The obligations, rules and failure modes are given as stored (:meth:`Knowledge.stored_data`: the JSON the
    mapper's typed reads decode), so a re-run decodes none of them.
    """
    return "map:" + fingerprint(
        mapper_code_fingerprint(),
        "\n".join(obligations),
        "\n".join(rules),
        "\n".join(modes),
        json.dumps(examples, sort_keys=True, separators=(",", ":")),
        json.dumps([[u.id, u.file, u.test, u.kind, u.fields] for u in units],
                   sort_keys=True, separators=(",", ":"), ensure_ascii=False),
    )


def known_examples(kb: Knowledge, exclude_source: str) -> dict[str, list[str]]:
    """Terms of tests other sources map confidently to each obligation (the mapper's known examples)."""
    from poetkb.learn.mapping import REVIEW_THRESHOLD

    examples: dict[str, list[str]] = {}
    for pattern in kb.pattern_data(exclude_source=exclude_source):
        terms = " ".join(pattern.get("terms", [])[:8])
        for match in pattern.get("obligations", []):
            if match.get("confidence", 0.0) >= REVIEW_THRESHOLD:
                examples.setdefault(match["id"], []).append(terms)
    return examples


def _summarise(
    kb: Knowledge,
    roots: Sequence[Path],
    commits: dict[Path, str | None],
    found: Discovery,
    skipped: list[Skipped],
    patterns: list[LearnedPattern],
) -> LearnSummary:
    covered: Counter[str] = Counter(m.id for p in patterns for m in p.obligations)
    all_ids = kb.obligation_ids()
    skipped = sorted(skipped, key=lambda s: (s.path, s.reason))
    return LearnSummary(
        roots=[SuiteRoot(name=_root_name(r), commit=commits.get(r)) for r in roots],
        files_mined=len(found.files) - sum(1 for s in skipped if s not in found.skipped),
        files_skipped=len(skipped),
        skipped_by_reason=dict(sorted(Counter(s.reason for s in skipped).items())),
        skipped=[SkippedFile(path=s.path, reason=s.reason, detail=s.detail) for s in skipped],
        units=len(patterns),
        units_mapped=sum(1 for p in patterns if p.obligations),
        units_by_kind=dict(sorted(Counter(p.kind for p in patterns).items())),
        candidates=sum(len(p.candidates) for p in patterns),
        covered=dict(sorted(covered.items())),
        gaps=[oid for oid in all_ids if oid not in covered],
    )


def _root_name(root: Path) -> str:
    try:
        return real_path(root).name
    except OSError:
        return root.name


# -- writing ----------------------------------------------------------------------------------------
def learned_file_text(report: LearnReport) -> str:
    """The learned file: source and summary as indented JSON, then one pattern per line (sorted by id).

    One line per pattern keeps the file small and a re-mine's diff readable.
    """
    head = json.dumps(
        {"source": report.source, "role": report.role, "summary": report.summary.model_dump(mode="json")},
        indent=1, sort_keys=True, ensure_ascii=False,
    )
    lines = [
        json.dumps(p.model_dump(mode="json", exclude_none=True, exclude_defaults=True) | {"id": p.id},
                   sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        for p in report.patterns
    ]
    body = ",\n".join(lines)
    return f'{head[:-2]},\n "patterns": [\n{body}\n ]\n}}\n' if lines else f'{head[:-2]},\n "patterns": []\n}}\n'


def _commit_results(
    kb: Knowledge, report: LearnReport, cache: LearnCache, target: Path | None, *, store: bool
) -> None:
    tmp: Path | None = None
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(target)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.unlink(missing_ok=True)  # a leftover of a process that had this pid before
            # Created afresh, never through a link planted under the temporary name.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            with os.fdopen(os.open(tmp, flags, 0o644), "w", encoding="utf-8") as handle:
                handle.write(learned_file_text(report))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}", path=target,
                             hint="pass --out to a writable directory") from exc
    try:
        with kb.transaction():
            cache.write()
            if store:
                store_patterns(kb, report.source, report.patterns)
            if tmp is not None and target is not None:
                try:
                    os.replace(tmp, target)
                except OSError as exc:
                    raise StoreError(f"cannot write {target}: {exc.strerror or exc}", path=target,
                                     hint="pass --out to a writable directory") from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def remove_stale_temp_files(target: Path) -> list[Path]:
    """Remove ``.<name>.<pid>.tmp`` files beside ``target`` left by runs that were killed; return them.

    A run killed (``kill -9``) between writing its temporary file and renaming it
    leaves that file behind. Only files whose process is gone are removed, so a
    concurrent run's file is left alone.
    """
    removed: list[Path] = []
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):-len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            os.unlink(target.parent / name)
        except OSError:
            continue
        removed.append(target.parent / name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def store_patterns(kb: Knowledge, source: str, patterns: Sequence[LearnedPattern]) -> None:
    """Replace one source's patterns, pattern nodes and learned_from edges (the caller holds the transaction)."""
    kb.replace_patterns(source, patterns)

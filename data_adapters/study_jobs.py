"""Per-study image work of `fedtar prepare` over a process pool, resumable through a journal.

Decoding and re-encoding images is what a prepare spends its time on, and studies are
independent once every study's site (and so its output folder) is known. Each adapter
turns its plan into jobs (one per study, keyed by the study's pseudonym) and a module-level
worker function; ``run_jobs`` runs them on N processes and returns the results in job order,
so the manifests are the same bytes at any worker count.

Resume: every written image goes to a temporary name and is renamed into place (a killed
run leaves no torn file under a final name); after a study's images are written, one line
(its pseudonym, image names, sizes and SHA-256 digests, its skip reasons) is appended to
``OUT/.prepare-journal.jsonl``. A rerun reuses a journaled study whose files are still there
with the same digests and redoes the rest. The journal's first line fingerprints the options
that shape the output (image size, views, the site secret's pseudonyms, ...): a rerun with
others is refused rather than mixing two preparations in one folder. No source identifier is
written to the journal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
JOURNAL_FILE = ".prepare-journal.jsonl"
PARTIAL_PREFIX = ".partial-"  # before the name: suffixes (.png, .nii.gz) still say the format


def available_cores() -> int:
    """The cores this process may use (os.process_cpu_count on 3.13+, the affinity mask before)."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return max(count() or 1, 1)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover (macOS, Windows)
        return max(os.cpu_count() or 1, 1)


def resolve_workers(workers: int, jobs: int) -> int:
    """0 means the machine's cores; never more processes than jobs."""
    if workers < 0:
        raise ValueError(f"--workers must be 0 (all cores) or a positive count, got {workers}")
    return max(1, min(workers or available_cores(), jobs))


def process_pool(workers: int) -> multiprocessing.pool.Pool:
    """A pool of fresh interpreters (spawn): safe after torch or a progress thread started in this one."""
    return multiprocessing.get_context("spawn").Pool(workers)


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call write(tmp) on a temporary name beside path, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(PARTIAL_PREFIX + path.name)
    write(tmp)
    os.replace(tmp, path)
    return path


def file_digest(path: Path) -> tuple[int, str]:
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


@dataclass
class JobResult:
    """What one study's job produced: images (relative to OUT), their views, skip reasons."""

    key: str
    images: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    skips: list[tuple[str, int, str]] = field(default_factory=list)   # (source, line, reason)
    digests: list[tuple[int, str]] = field(default_factory=list)      # (bytes, sha256) per image
    resumed: bool = False


def _verified(out: Path, entry: dict) -> JobResult | None:
    """The journaled result when all its files are there with the same digests."""
    for rel, expected in zip(entry["images"], entry["digests"]):
        path = out / rel
        if not path.is_file() or list(file_digest(path)) != list(expected):
            return None
    return JobResult(entry["key"], list(entry["images"]), list(entry["views"]),
                     [tuple(s) for s in entry["skips"]], [tuple(d) for d in entry["digests"]], resumed=True)


def _call(task: tuple[int, Callable, Any, str, dict | None]) -> tuple[int, JobResult]:
    index, work, job, out, journaled = task
    if journaled is not None and (done := _verified(Path(out), journaled)) is not None:
        return index, done
    result = work(job)
    result.digests = [file_digest(Path(out) / rel) for rel in result.images]
    return index, result


def _read_journal(path: Path, fingerprint: dict) -> dict[str, dict]:
    if not path.is_file():
        return {}
    entries: dict[str, dict] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill: that study is redone
            if n == 0:
                if item.get("fingerprint") != fingerprint:
                    old = item.get("fingerprint") or {}
                    differ = sorted(k for k in {*old, *fingerprint} if old.get(k) != fingerprint.get(k))
                    raise ValueError(f"{path}: this folder holds a prepare with other options "
                                     f"({', '.join(differ) or 'unreadable header'}); write to a new folder")
                continue
            entries[item["key"]] = item
    return entries


def run_jobs(out: Path, jobs: Sequence[Any], work: Callable[[Any], JobResult], fingerprint: dict,
             workers: int = 0, progress: bool = False, images_per_job: Callable[[Any], int] = lambda job: 1
             ) -> list[JobResult]:
    """Results of work(job) for every job (each has a unique .key), in job order."""
    out.mkdir(parents=True, exist_ok=True)
    journal_path = out / JOURNAL_FILE
    journaled = _read_journal(journal_path, fingerprint)
    tasks = [(i, work, job, str(out), journaled.get(job.key)) for i, job in enumerate(jobs)]
    workers = resolve_workers(workers, len(tasks))
    results: dict[int, JobResult] = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(images_per_job(j) for j in jobs), unit="img", desc="prepare", smoothing=0.1)
    new_journal = not journal_path.is_file()
    with journal_path.open("a", encoding="utf-8") as journal:
        if new_journal:
            journal.write(json.dumps({"fingerprint": fingerprint}) + "\n")
        for index, result in _results(tasks, workers):
            results[index] = result
            if not result.resumed:
                entry = asdict(result)
                entry.pop("resumed")
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
            if bar is not None:
                bar.update(images_per_job(jobs[index]))
    if bar is not None:
        bar.close()
    resumed = sum(r.resumed for r in results.values())
    if resumed:
        log.info("reused %d of %d studies written by an earlier run (%s)", resumed, len(jobs), journal_path)
    for leftover in out.rglob(f"{PARTIAL_PREFIX}*"):  # torn by a kill in an earlier run
        leftover.unlink()
    return [results[i] for i in range(len(tasks))]


def _results(tasks: list[tuple], workers: int) -> Iterator[tuple[int, JobResult]]:
    if workers == 1:
        yield from map(_call, tasks)
        return
    with process_pool(workers) as pool:
        yield from pool.imap_unordered(_call, tasks, chunksize=max(1, min(16, len(tasks) // (8 * workers))))

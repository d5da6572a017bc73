"""The labeler's real-text development set: odd-numbered IU chest X-ray reports and our hand labels.

The IU chest X-ray collection (Open-i, Indiana University; CC BY-NC-ND 4.0)
ships inside the torchxrayvision wheel on PyPI as
`torchxrayvision/data/NLMCXR_reports.tgz`, one XML per report
(`ecgen-radiology/<id>.xml`). The licence forbids derivatives, so the
repository holds only report ids and our labels
(`tests/data/iu_dev_labels.csv`); the text is read from the wheel (or the
tgz) at run time.

Only odd-numbered reports are ever read: the even-numbered ones are the
maintainers' held-out set. `odd_reports` filters archive members by their
integer stem before it opens any of them, and refuses an even id.

Where the archive comes from, in order: a path given, `$FEDTAR_IU_REPORTS`
(the wheel or the tgz), a torchxrayvision wheel already in `cache_dir`, or
`pip download --no-deps torchxrayvision` into `cache_dir`
(`fetch_wheel`; network to the package index only).
"""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable
from pathlib import Path

ENV_VAR = "FEDTAR_IU_REPORTS"
TGZ_IN_WHEEL = "torchxrayvision/data/NLMCXR_reports.tgz"
DEV_LABELS = Path(__file__).resolve().parents[3] / "tests" / "data" / "iu_dev_labels.csv"
_MEMBER = re.compile(r"(?:.*/)?(\d+)\.xml")


class ArchiveUnavailable(RuntimeError):
    """The IU reports archive could not be found or downloaded (the reason is the message)."""


def fetch_wheel(cache_dir: str | os.PathLike) -> Path:
    """The torchxrayvision wheel in `cache_dir`, downloaded with pip (no dependencies) if absent."""
    cache = Path(cache_dir)
    found = sorted(cache.glob("torchxrayvision-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
           "--dest", str(cache), "torchxrayvision"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ArchiveUnavailable(f"pip download torchxrayvision failed: {e}") from e
    found = sorted(cache.glob("torchxrayvision-*.whl"))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
        raise ArchiveUnavailable(f"pip download torchxrayvision failed: {tail[0]}")
    return found[-1]


def locate_archive(path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The wheel or tgz holding the IU reports (see the module docstring for the order)."""
    given = path or os.environ.get(ENV_VAR)
    if given:
        p = Path(given)
        if not p.is_file():
            raise ArchiveUnavailable(f"{given} (from {'argument' if path else ENV_VAR}) is not a file")
        return p
    if cache_dir is None:
        raise ArchiveUnavailable(f"no archive given: set {ENV_VAR} or pass a cache directory to download into")
    return fetch_wheel(cache_dir)


def _open_tgz(archive: Path) -> tarfile.TarFile:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            try:
                data = z.read(TGZ_IN_WHEEL)
            except KeyError as e:
                raise ArchiveUnavailable(f"{archive} has no {TGZ_IN_WHEEL}") from e
        return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")
    return tarfile.open(archive, mode="r:gz")


def report_text(xml: bytes) -> str:
    """FINDINGS then IMPRESSION of one report (the sections the labels describe)."""
    root = ET.fromstring(xml)
    parts = {a.get("Label"): (a.text or "").strip() for a in root.iter("AbstractText")}
    return " ".join(p for p in (parts.get("FINDINGS", ""), parts.get("IMPRESSION", "")) if p)


def odd_reports(archive: str | os.PathLike, ids: Iterable[int] | None = None) -> dict[int, str]:
    """Report id -> FINDINGS + IMPRESSION text, for odd-numbered reports only (all, or `ids`).

    Members are selected by their odd integer stem before any is read; an even id is an error."""
    wanted = None if ids is None else {int(i) for i in ids}
    if wanted is not None and any(i % 2 == 0 for i in wanted):
        raise ValueError("even-numbered IU reports are the maintainers' held-out set; never read them")
    out: dict[int, str] = {}
    with _open_tgz(Path(archive)) as tar:
        for member in tar.getmembers():  # names only; no content is read here
            m = _MEMBER.fullmatch(member.name)
            if not (member.isfile() and m):
                continue
            rid = int(m.group(1))
            if rid % 2 == 0 or (wanted is not None and rid not in wanted):
                continue
            f = tar.extractfile(member)
            if f is not None:
                out[rid] = report_text(f.read())
    return out


def load_labels(path: str | os.PathLike = DEV_LABELS) -> tuple[tuple[str, ...], dict[int, dict[str, int]]]:
    """(observations, {report id: {observation: 1 / 0 / -1}}); a blank cell (not mentioned) is left out."""
    with open(path, newline="", encoding="utf-8-sig") as f:  # a BOM (a spreadsheet's "CSV UTF-8") is UTF-8
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    observations = tuple(header[1:])
    labels: dict[int, dict[str, int]] = {}
    for row in body:
        if not row or not row[0].strip():
            continue
        rid = int(row[0])
        if rid % 2 == 0:
            raise ValueError(f"{path}: report {rid} is even-numbered (held out)")
        labels[rid] = {o: int(v) for o, v in zip(observations, row[1:]) if v.strip() != ""}
    return observations, labels


def agreement(predicted: dict[int, dict[str, int]], gold: dict[int, dict[str, int]],
              observations: Iterable[str]) -> dict:
    """The maintainers' protocol (positive vs not: uncertain and unmentioned count as negative) per
    observation and pooled, plus exact-label agreement (1 / 0 / -1 / not mentioned, cell by cell;
    "No Finding" 0 is read as not mentioned, as CheXpert leaves it blank).

    Returns {"per_observation": {obs: {tp, fp, fn, precision, recall, f1, support, exact}},
    "micro_f1", "macro_f1" (mean over observations with a gold positive), "exact"}."""
    def f(t: int, p: int, n: int) -> tuple[float, float, float]:
        return (t / (t + p) if t + p else 0.0, t / (t + n) if t + n else 0.0,
                2 * t / (2 * t + p + n) if t + p + n else 0.0)

    def cell(labels: dict[str, int], o: str) -> int | None:
        v = labels.get(o)
        return None if o == "No Finding" and v == 0 else v

    ids = sorted(gold)
    per: dict[str, dict] = {}
    T = P = N = same_all = 0
    for o in observations:
        tp = fp = fn = same = 0
        for rid in ids:
            g, p = gold[rid].get(o) == 1, predicted.get(rid, {}).get(o) == 1
            tp += g and p
            fp += p and not g
            fn += g and not p
            same += cell(gold[rid], o) == cell(predicted.get(rid, {}), o)
        pr, rc, f1 = f(tp, fp, fn)
        per[o] = {"tp": tp, "fp": fp, "fn": fn, "support": tp + fn, "precision": pr, "recall": rc, "f1": f1,
                  "exact": same / len(ids) if ids else 0.0}
        T, P, N, same_all = T + tp, P + fp, N + fn, same_all + same
    present = [v["f1"] for v in per.values() if v["support"]]
    return {"per_observation": per, "micro_f1": f(T, P, N)[2],
            "macro_f1": sum(present) / len(present) if present else 0.0,
            "exact": same_all / (len(ids) * len(per)) if ids and per else 0.0, "n": len(ids)}

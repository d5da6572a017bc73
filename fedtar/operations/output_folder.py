"""Where a command may write: one owner at a time, a stamp saying what the folder holds, never inside an input.

Every writing command (synth, prepare dicom / mimic-cxr, simulate, demo, experiment compare,
evaluate --out) claims its output through ``claim_output`` (a folder) or ``claim_output_file``
(one file) before any work:

- inputs (sources, manifests' folders, bases, models) must exist, and the output may not be one of
  them or lie inside one: a command never writes into what it reads;
- a lock file holding the PID: a second command on the same output is refused while the first
  runs; a lock left by a process that no longer exists is taken over;
- a stamp (``.fedtar-output.json``: the command, hashes of what it depends on): a folder stamped by
  another command, or holding files no fedtar command stamped, is refused unless ``overwrite``;
- ``safe_child`` builds paths from user text (site ids, setting names) that stay inside their folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_FILE = ".fedtar.lock"
STAMP_FILE = ".fedtar-output.json"


class OutputError(ValueError):
    """An output the command must not write (held, foreign, inside an input, outside its folder)."""


def content_hash(values: Any) -> str:
    """SHA-256 of a JSON-able value with sorted keys: the same settings give the same hash in any process."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def safe_child(folder: str | Path, name: str, what: str = "name") -> Path:
    """folder/name where `name` is user text: one plain path component, never '..', a separator or absolute."""
    text = str(name)
    if (not text.strip() or text in (".", "..") or "/" in text or "\\" in text or "\x00" in text
            or text != text.strip()):
        raise OutputError(f"{what} {text!r}: not a plain name (no '/', '\\', '..' or surrounding spaces); "
                          f"it names a folder under {folder}")
    return Path(folder) / text


def manifest_inputs(label: str, manifests: list[Path]) -> dict[str, Path]:
    """Each manifest's folder (its images live there) as an input named by the option that gave it."""
    return {f"{label} {m}": Path(m).parent for m in manifests}


def ensure_not_inside(out: str | Path, inputs: Mapping[str, str | Path]) -> None:
    """Each input must exist, and `out` may not be one of them or inside one (labels name them: '--root')."""
    dst = Path(out).resolve()
    for label, path in inputs.items():
        src = Path(path)
        if not src.exists():
            raise FileNotFoundError(f"{label} {src}: not found")
        src = src.resolve()
        if dst == src or src in dst.parents:
            raise OutputError(f"refusing to write {dst}: it is inside the input {label} {src}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _acquire(lock: Path, kind: str) -> None:
    """Create the lock with our PID; a live holder is an error, a dead one's lock is taken over."""
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
                pid = int(holder.get("pid", 0))
            except (OSError, ValueError):
                holder, pid = {}, 0
            if pid > 0 and _pid_alive(pid):
                raise OutputError(
                    f"{lock.parent} is in use by process {pid} (fedtar {holder.get('command', '?')}, since "
                    f"{holder.get('since', '?')}): wait for it to finish; if that process is not a fedtar "
                    f"command, remove {lock}") from None
            try:  # stale: its process is gone; the rename makes a concurrent takeover fail cleanly
                os.replace(lock, lock.with_name(lock.name + f".stale-{os.getpid()}"))
                os.unlink(lock.with_name(lock.name + f".stale-{os.getpid()}"))
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "command": kind, "since": dt.datetime.now().isoformat(timespec="seconds")},
                      f)
        return
    raise OutputError(f"could not take the lock {lock}: another process keeps taking it")


def _release(lock: Path) -> None:
    try:
        if int(json.loads(lock.read_text()).get("pid", 0)) == os.getpid():
            lock.unlink()
    except (OSError, ValueError):
        pass


@contextmanager
def locked(lock: Path, kind: str) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    _acquire(lock, kind)
    try:
        yield
    finally:
        _release(lock)


def read_stamp(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / STAMP_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_kind(folder: Path, kind: str, overwrite: bool) -> None:
    stamp = read_stamp(folder)
    if overwrite:
        return
    if stamp is not None:
        if stamp.get("command") != kind:
            raise OutputError(f"{folder} holds the output of `fedtar {stamp.get('command')}` ({STAMP_FILE}); "
                              f"`fedtar {kind}` will not write there: choose another folder or pass --overwrite")
        return
    foreign = sorted(p.name for p in folder.iterdir() if not (p.name == LOCK_FILE or _is_part_lock(p.name)))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{folder} is not empty and no fedtar command stamped it ({shown}): `fedtar {kind}` "
                          "will not write among files it did not write: choose an empty or new folder, "
                          "or pass --overwrite")


def _is_part_lock(name: str) -> bool:
    return name.startswith(".part-") and name.endswith(".lock")


@contextmanager
def claim_output(folder: str | Path, kind: str, inputs: Mapping[str, str | Path] | None = None,
                 overwrite: bool = False, stamp: Mapping[str, Any] | None = None,
                 lock_name: str | None = None) -> Iterator[Path]:
    """Own `folder` for one command (`kind`, e.g. 'synth'); `stamp` adds what it depends on (hashes).
    `lock_name`: a lock of its own, for processes that share the folder by design (sweep parts)."""
    folder = Path(folder)
    ensure_not_inside(folder, inputs or {})
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / (lock_name or LOCK_FILE), kind):
        _check_kind(folder, kind, overwrite)
        # No time in the stamp: the same command and settings write the same bytes.
        (folder / STAMP_FILE).write_text(json.dumps({"command": kind, **(stamp or {})}, indent=2, sort_keys=True,
                                                    default=str) + "\n")
        yield folder


@contextmanager
def claim_output_file(path: str | Path, kind: str, header: str, inputs: Mapping[str, str | Path] | None = None,
                      overwrite: bool = False) -> Iterator[Path]:
    """Own one output file: an existing file is replaced only if its first line is `header` (this
    command wrote it) or with `overwrite`; the lock sits beside it as NAME.lock."""
    path = Path(path)
    ensure_not_inside(path, inputs or {})
    with locked(path.with_name(path.name + ".lock"), kind):
        if path.exists() and not overwrite:
            try:
                with path.open(encoding="utf-8-sig", errors="replace") as f:  # a BOM (Excel) is not the header
                    first = f.readline().rstrip("\r\n")
            except OSError as e:
                raise OutputError(f"{path}: exists and cannot be read: {e}") from e
            if first != header:
                raise OutputError(f"{path} exists and was not written by `fedtar {kind}` (its first line is not "
                                  f"{header!r}): choose another file or pass --overwrite")
        yield path

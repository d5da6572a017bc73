"""What left a site: an append-only, hash-chained audit log of every reply a site sends.

Each line (JSON) lists the reply's tensors (record, name, dtype, shape, bytes), its
metric names and values, the total bytes and a SHA-256 digest of the content, and
the digest of the previous line, so that removing or editing a line breaks the chain
(``verify_chain``). The server computes the same ``content_digest`` on what it
receives, so a hospital can show that the server got exactly what its log lists.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from flwr.app import RecordDict

GENESIS = "0" * 64


def content_digest(content: RecordDict) -> str:
    """SHA-256 over every array (record, name, dtype, shape, bytes) and metric, in name order."""
    h = hashlib.sha256()
    for rname in sorted(content.array_records):
        for name, array in sorted(content.array_records[rname].items()):
            h.update(f"A\x00{rname}\x00{name}\x00{array.dtype}\x00{tuple(array.shape)}\x00".encode())
            h.update(array.data)
    for rname in sorted(content.metric_records):
        h.update(f"M\x00{rname}\x00".encode())
        h.update(json.dumps(dict(content.metric_records[rname]), sort_keys=True).encode())
    for rname in sorted(content.config_records):
        h.update(f"C\x00{rname}\x00".encode())
        h.update(json.dumps(dict(content.config_records[rname]), sort_keys=True, default=str).encode())
    return h.hexdigest()


def describe(content: RecordDict) -> dict[str, Any]:
    arrays = [{"record": r, "name": n, "dtype": str(a.dtype), "shape": list(a.shape), "bytes": len(a.data)}
              for r in sorted(content.array_records) for n, a in sorted(content.array_records[r].items())]
    metrics = {f"{r}/{k}": v for r in sorted(content.metric_records)
               for k, v in sorted(content.metric_records[r].items())}
    return {"arrays": arrays, "metrics": metrics, "total_bytes": sum(a["bytes"] for a in arrays),
            "digest": content_digest(content)}


def _last_line_hash(path: Path) -> str:
    if not path.is_file() or path.stat().st_size == 0:
        return GENESIS
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 1_000_000))
        last = f.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return hashlib.sha256(last).hexdigest()


def append_entry(path: str | Path, content: RecordDict, **fields: Any) -> dict[str, Any]:
    """Append one reply to the log (opened in append mode, fsynced) and return the entry."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields, **describe(content),
             "prev": _last_line_hash(path)}
    line = json.dumps(entry, sort_keys=True, default=str)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    return entry


def read_log(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def verify_chain(path: str | Path) -> list[str]:
    """Problems found (empty: the chain is intact)."""
    problems, prev = [], GENESIS
    for i, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if json.loads(line).get("prev") != prev:
            problems.append(f"{path}:{i}: previous-line digest does not match (a line was removed or edited)")
        prev = hashlib.sha256(line.encode()).hexdigest()
    return problems

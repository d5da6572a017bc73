"""Files only their owner may read: site secrets, private keys, certificates."""

from __future__ import annotations

import os
from pathlib import Path


def write_owner_only(path: str | Path, data: bytes, exclusive: bool = False) -> Path:
    """Write `data` with mode 0600 (its folder 0700 when created); `exclusive`: fail if it exists."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)  # an existing file keeps its mode on open
    return path

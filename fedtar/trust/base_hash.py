"""One fingerprint of a base model folder, so a site can pin the base it vetted.

SHA-256 over every regular file under the folder (weights, configs, tokenizer), in the
order of their relative POSIX paths, each framed by its path and size: renaming, adding,
removing or editing any file changes the hash; where the folder lives does not.
``fedtar base-hash DIR`` prints it for node.toml's ``base_sha256``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20
_CACHE: dict[tuple, str] = {}  # a simulated site hashes once per process while the files are unchanged


def base_sha256(folder: str | Path) -> str:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: base folder not found")
    files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise ValueError(f"{folder}: base folder is empty")
    key = (str(folder.resolve()), tuple((p.relative_to(folder).as_posix(), s.st_size, s.st_mtime_ns)
                                        for p in files for s in (os.stat(p),)))
    if key in _CACHE:
        return _CACHE[key]
    h = hashlib.sha256()
    for p in files:
        rel = p.relative_to(folder).as_posix().encode()
        h.update(len(rel).to_bytes(8, "big") + rel + p.stat().st_size.to_bytes(8, "big"))
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    _CACHE[key] = h.hexdigest()
    return _CACHE[key]

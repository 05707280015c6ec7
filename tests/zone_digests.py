"""sha256 of every file of a data-root zone: the byte-for-byte comparison of two runs' outputs."""

from __future__ import annotations

import hashlib
from pathlib import Path


def zone_digests(root: Path, zone: str) -> dict[str, str]:
    """sha256 of every file of ``root/zone``, by its path inside the data root."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((root / zone).rglob("*"))
        if p.is_file()
    }

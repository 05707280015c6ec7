"""Published zones are read-only: once ``curated/`` or ``shards/`` is published, nothing edits it in place.

Sealing removes every write bit from the files (directories stay writable for their owner, so the next run
can still swap a new build in by rename).  The one sanctioned in-place change is an erasure, which unseals
exactly the files it rewrites and seals them again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from medcurate.core.names import PUBLISHING_STAGES
from medcurate.core.zones import Zones

WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def seal(directory: Path) -> int:
    """chmod a-w every file under ``directory``; returns how many files were sealed."""
    sealed = 0
    for path in directory.rglob("*") if directory.exists() else []:
        if path.is_file() and not path.is_symlink():
            os.chmod(path, path.stat().st_mode & ~WRITE_BITS)
            sealed += 1
    return sealed


def unseal(path: Path) -> None:
    """chmod u+w one file, before an erasure rewrites it."""
    if path.exists():
        os.chmod(path, path.stat().st_mode | stat.S_IWUSR)


def seal_published(zones: Zones, stage: str) -> int:
    """Seal the zone ``stage`` publishes (no-op for other stages)."""
    zone = PUBLISHING_STAGES.get(stage)
    return seal(zones.root / zone) if zone else 0

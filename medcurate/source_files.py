"""Source files are named by an opaque keyed id everywhere outside the owner-only zones.

A file's path is PHI: Synthea names each bundle ``Given123_Family456_<patient-uuid>.json`` and hospital
exports name files ``SMITH_JOHN_<MRN>.pdf``.  So records, stage reports, the catalog, the report and the
logs name a source file by ``src-<16 hex>``, an HMAC of its absolute path under the pseudonymization key
(stable across runs, not reversible without the key, and not guessable from a list of patient names), plus
the file's content sha256.  The one place that maps an id back to its path is
``raw/<source>/source_files.json``, owner-only like the rest of the raw zone and rewritten with it by every
ingest of that source; ``medcurate lineage`` reads it for a user who may.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from medcurate.keys import keyed_hash
from medcurate.zones import Zones, make_private_dir

NAMESPACE = "source-file"
ID_PREFIX = "src-"
MAPPING_FILE = "source_files.json"


def source_file_id(key: bytes, path: Path) -> str:
    """The opaque id of the file at ``path``.  The path's bytes are hashed (as hex) so that a name that is not
    valid UTF-8 gets an id too."""
    return ID_PREFIX + keyed_hash(key, NAMESPACE, os.fsencode(path.resolve()).hex())[:16]


def mapping_path(zones: Zones, source: str) -> Path:
    return zones.raw / source / MAPPING_FILE


class SourceFileIndex:
    """One source's id -> path mapping, collected while the source is ingested and saved owner-only."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.paths: dict[str, str] = {}

    def id_of(self, path: Path) -> str:
        file_id = source_file_id(self.key, path)
        self.paths[file_id] = os.fsdecode(path.resolve())
        return file_id

    def save(self, zones: Zones, source: str) -> Path:
        """Write the mapping under a temporary name, then rename; created 0600 so it is never readable by others."""
        target = mapping_path(zones, source)
        make_private_dir(target.parent)
        tmp = target.with_name(f".{target.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(dict(sorted(self.paths.items())), fh, indent=1)
        os.replace(tmp, target)
        return target


@dataclass(frozen=True)
class Resolution:
    """The path of a source file id, or why it cannot be given (``path`` None, ``problem`` says why)."""

    path: str | None
    problem: str | None = None


def resolve(zones: Zones, source: str, file_id: str) -> Resolution:
    """The path behind ``file_id``, for a user who can read the raw zone."""
    mapping = mapping_path(zones, source)
    try:
        paths = json.loads(mapping.read_text())
    except PermissionError:
        return Resolution(None, f"the id -> path mapping is owner-only and this user cannot read {mapping}")
    except FileNotFoundError:
        return Resolution(None, f"no id -> path mapping at {mapping} (the raw zone is not here, or was erased)")
    if file_id not in paths:
        return Resolution(None, f"{mapping} does not list this id (the source was re-ingested since)")
    return Resolution(paths[file_id])

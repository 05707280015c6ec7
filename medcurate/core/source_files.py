"""Source files are named by an opaque keyed id everywhere outside the owner-only zones.

A file's path is PHI: Synthea names each bundle ``Given123_Family456_<patient-uuid>.json`` and hospital
exports name files ``SMITH_JOHN_<MRN>.pdf``.  So records, stage reports, the catalog, the report and the
logs name a source file by ``src-<16 hex>``, an HMAC of its absolute path under the pseudonymization key
(stable across runs, not reversible without the key, and not guessable from a list of patient names), plus
the file's content sha256.  The one place that maps an id back to its path is
``raw/<source>/source_files.json``, owner-only like the rest of the raw zone and rewritten with it by every
ingest of that source; ``medcurate lineage`` reads it for a user who may.  An erasure drops the paths of the
files that no longer hold any record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.core.keys import keyed_hash
from medcurate.core.zones import Zones, make_private_dir, temporary_path, zone_parts

NAMESPACE = "source-file"
ID_PREFIX = "src-"
MAPPING_FILE = "source_files.json"


def source_file_id(key: bytes, path: Path) -> str:
    """The opaque id of the absolute ``path``.  The path's bytes are hashed (as hex) so that a name that is not
    valid UTF-8 gets an id too."""
    return ID_PREFIX + keyed_hash(key, NAMESPACE, os.fsencode(path).hex())[:16]


def mapping_path(zones: Zones, source: str) -> Path:
    return zones.raw / source / MAPPING_FILE


class SourceFileIndex:
    """One source's id -> path mapping, collected while the source is ingested and saved owner-only."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.paths: dict[str, str] = {}

    def id_of(self, path: Path, *, follow_symlink: bool = True) -> str:
        """The id of the file at ``path`` (symlinks resolved); with ``follow_symlink=False``, of a symlink itself
        (one the listing refused: its target was never read)."""
        where = path.resolve() if follow_symlink else path.parent.resolve() / path.name
        file_id = source_file_id(self.key, where)
        self.paths[file_id] = os.fsdecode(where)
        return file_id

    def save(self, zones: Zones, source: str) -> Path:
        target = mapping_path(zones, source)
        _write(target, self.paths)
        return target


def _write(target: Path, paths: dict[str, str]) -> None:
    """Write a mapping under a temporary name, then rename; created 0600 so it is never readable by others."""
    make_private_dir(target.parent)
    tmp = temporary_path(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(dict(sorted(paths.items())), fh, indent=1)
    os.replace(tmp, target)


def _file_ids_in_raw(zones: Zones, source: str, doc_ids: Collection[str] | None = None) -> set[str]:
    """The file ids that the source's raw records name (only the records of ``doc_ids``, when given)."""
    parts = zone_parts(zones.raw / source)
    if not parts:
        return set()
    table = pq.ParquetDataset(parts).read(columns=["doc_id", "source_file"])
    if doc_ids is not None:
        table = table.filter(pc.is_in(table["doc_id"], pa.array(sorted(doc_ids), pa.string())))
    return set(table["source_file"].to_pylist())


def files_to_forget(zones: Zones, doc_ids: Collection[str], source: str | None) -> dict[str, set[str]]:
    """Before an erasure: per source, the files that hold the documents to erase (for a source, all its files).

    A Synthea bundle is named after its one patient: once that patient is erased, the mapping must not keep
    the name (``forget_files_without_records``)."""
    if source is not None:
        mapping = mapping_path(zones, source)
        return {source: set(json.loads(mapping.read_text())) if mapping.exists() else set()}
    sources = sorted(p.parent.name for p in zones.raw.glob(f"*/{MAPPING_FILE}"))
    return {name: _file_ids_in_raw(zones, name, doc_ids) for name in sources}


def forget_files_without_records(zones: Zones, candidates: dict[str, set[str]]) -> int:
    """After an erasure: drop from each source's mapping the candidate files that no raw record names any more
    (an emptied mapping is deleted); returns how many paths were dropped."""
    dropped = 0
    for source, file_ids in sorted(candidates.items()):
        mapping = mapping_path(zones, source)
        if not file_ids or not mapping.exists():
            continue
        paths = json.loads(mapping.read_text())
        gone = (file_ids - _file_ids_in_raw(zones, source)) & paths.keys()
        kept = {file_id: path for file_id, path in paths.items() if file_id not in gone}
        if kept:
            _write(mapping, kept)
        else:
            mapping.unlink()
        dropped += len(gone)
    return dropped


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

"""Completion records that let a killed shard build finish without starting over.

The build happens in a staging directory that survives a crash.  ``_progress/build.json`` holds the build
key: a digest of everything the shard bytes depend on (curated input files, spec, given tokenizer, code
version).  A later attempt with the same key keeps what the earlier one finished; any other key wipes the
staging directory first, so shards of different inputs are never mixed.

A shard is written under a temporary name, renamed when complete, and only then gets its record
``_progress/<split>-<index>.json`` (sha256, row range in the split's row stream, counts).  On resume a record
counts only if its file is still there with that sha256, and only the unbroken run of records from index 0:
the writer skips that many rows of the (deterministic) row stream and writes the rest.  A file without a
record is an unfinished shard and is written again.  Records are written by rename too, so a kill leaves
either the whole record or none.  The records are deleted before the shards are published: they describe a
build, not its result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medcurate.core.hashing import sha256_file
from medcurate.core.zones import write_text_atomic

log = logging.getLogger(__name__)

PROGRESS_DIR = "_progress"
# Bump when the shard byte format changes, so an old staging directory is never resumed by new code.
PROGRESS_FORMAT = 2


@dataclass(frozen=True)
class ShardFile:
    """One complete shard: what its completion record and the manifest say about it.

    ``rows_start``/``rows`` place it in its split's row stream (documents, or packed sequences).
    ``documents`` counts the documents that start in it (in packed mode one may continue in the next).
    """

    path: Path
    split: str
    index: int
    sha256: str
    rows_start: int
    rows: int
    documents: int
    tokens: int
    documents_by_source: dict[str, int] = field(default_factory=dict)
    tokens_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def rows_end(self) -> int:
        return self.rows_start + self.rows


def write_json_atomic(data: dict[str, Any], path: Path) -> Path:
    """Sorted keys, fixed indentation, written by rename: a reader never sees half a file."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def build_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"format": PROGRESS_FORMAT, **parts}, sort_keys=True).encode()).hexdigest()


class BuildProgress:
    """The staging directory of one build and its completion records."""

    def __init__(self, staging: Path, key: str) -> None:
        self.staging = staging
        self.dir = staging / PROGRESS_DIR
        build_file = self.dir / "build.json"
        previous = json.loads(build_file.read_text()) if build_file.is_file() else {}
        self.resumed = previous.get("build_key") == key
        if not self.resumed:
            shutil.rmtree(staging, ignore_errors=True)
            self.dir.mkdir(parents=True)
            write_json_atomic({"build_key": key}, build_file)
        log.info("shard: %s build in %s", "resuming the" if self.resumed else "starting a new", staging.name)

    def step_done(self, name: str, sha256_of: Path) -> bool:
        """Whether a whole-file step (e.g. the tokenizer) completed and its file is intact."""
        record = self.dir / f"{name}.json"
        if not (record.is_file() and sha256_of.is_file()):
            return False
        return json.loads(record.read_text())["sha256"] == sha256_file(sha256_of)

    def mark_step(self, name: str, sha256: str) -> None:
        write_json_atomic({"sha256": sha256}, self.dir / f"{name}.json")

    def completed_shards(self, split: str) -> list[ShardFile]:
        """The split's intact shards from index 0 up to the first missing or damaged one."""
        done: list[ShardFile] = []
        while (record := self.dir / f"{split}-{len(done):05d}.json").is_file():
            data = json.loads(record.read_text())
            shard = ShardFile(**{**data, "path": self.staging / data["path"]})
            if not shard.path.is_file() or sha256_file(shard.path) != shard.sha256:
                break
            done.append(shard)
        pattern = re.compile(rf"{re.escape(split)}-(\d{{5}})\.json")
        for stale in self.dir.iterdir():
            match = pattern.fullmatch(stale.name)
            if match and int(match.group(1)) >= len(done):
                stale.unlink()
        return done

    def record_shard(self, shard: ShardFile) -> None:
        data = asdict(shard) | {"path": shard.path.relative_to(self.staging).as_posix()}
        write_json_atomic(data, self.dir / f"{shard.split}-{shard.index:05d}.json")

    def finish(self) -> None:
        """Drop the records once the build is complete; the staging directory is then ready to publish."""
        shutil.rmtree(self.dir)

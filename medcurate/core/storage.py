"""A data root in an object store (``s3://bucket/prefix``, ``file://...``, any fsspec URI) behind a local working copy.

Every stage works on local files: pathlib, atomic renames, owner-only PHI zones, DuckDB, Great Expectations.
Rewriting all of them onto a remote filesystem would trade those guarantees for latency, so a URI data root is
mirrored instead: each machine keeps a working copy of the zones in a private scratch directory (one per URI),
**pulls** before it acts and **pushes** what it changed after it succeeded.  Any task on any worker therefore
starts from the last published state and publishes its own, which is what Airflow's task model needs.

- Only the six zone directories are mirrored.  Stages' staging directories (``.curated.<run>.tmp``,
  ``.shards-staging``) sit beside the zones, so a killed shard build still resumes on the same worker, and
  ``*.tmp`` files inside a zone are never transferred.
- Transfers are by difference.  ``sync-state.json`` in the working copy remembers, per file, its local size,
  mtime and md5 and the remote version (the ETag, else size and mtime) as of the last transfer: a pull
  downloads what changed remotely or was touched locally since, a push uploads what changed locally (an md5
  equal to the last one is not a change) and deletes the remote files the stage removed.
- A push uploads data files first, then deletes what the stage removed, and the files that declare a state
  complete last (``manifest.json``, the report, stage reports, and the audit log after everything), so a
  reader never sees a new manifest or a ``stage_end`` event before the files they describe.
- A pull makes the pulled zones an exact mirror of the remote ones, so what a failed stage left behind in
  the working copy never reaches the next stage.

Credentials never appear here or in a spec: fsspec/s3fs and botocore read ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL`` (or ``FSSPEC_S3_ENDPOINT_URL``), ``AWS_PROFILE``, instance roles.
Object stores have no 0700: ``raw/`` and ``quarantine/`` keep their prefixes so a bucket policy can restrict
them, and ``MEDCURATE_S3_SSE`` (``AES256`` or ``aws:kms``, with ``MEDCURATE_S3_SSE_KMS_KEY_ID``) asks S3 to
encrypt every object written.  Tasks sharing a working copy take turns (``exclusive``); machines with separate
working copies must not write one data root at the same time, since the audit log is uploaded whole.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcurate.core.zones import ZONES, make_private_dir, write_text_atomic

log = logging.getLogger("medcurate")

WORK_DIR_ENV = "MEDCURATE_WORK_DIR"
SSE_ENV = "MEDCURATE_S3_SSE"
SSE_KMS_KEY_ENV = "MEDCURATE_S3_SSE_KMS_KEY_ID"
ORIGIN_FILE = "origin.json"
STATE_FILE = "sync-state.json"
LOCK_FILE = "lock"
LOCAL_ROOT = "data"
# Files that declare a state complete, pushed after every data file, in this order (the audit log last).
COMMIT_ORDER = (
    "shards/manifest.json",
    "governance/report.*",
    "governance/stages/*",
    "governance/audit.log.jsonl",
)
URI_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_HELD: set[tuple[Path | None, int]] = set()  # (working copy, thread) pairs holding ``exclusive``


def is_uri(data_root: str | Path | None) -> bool:
    """``s3://...``, ``file://...``: a root fsspec resolves, as opposed to a plain local path."""
    return isinstance(data_root, str) and bool(URI_PATTERN.match(data_root))


@dataclass
class Transfer:
    """What one pull or push moved (paths relative to the data root); logged as counts only."""

    downloaded: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def counts(self) -> str:
        return f"{len(self.downloaded)} downloaded, {len(self.uploaded)} uploaded, {len(self.deleted)} deleted"


@dataclass(frozen=True)
class WorkingCopy:
    """The local mirror of one URI data root: ``<work dir>/<hash of the URI>/data`` holds the zones."""

    uri: str
    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / LOCAL_ROOT

    def filesystem(self) -> tuple[Any, str]:
        """The fsspec filesystem and the root path in it; options come from the environment only."""
        from fsspec.core import url_to_fs

        options: dict[str, Any] = {}
        if self.uri.startswith(("s3://", "s3a://")) and os.environ.get(SSE_ENV):
            extra = {"ServerSideEncryption": os.environ[SSE_ENV]}
            if os.environ.get(SSE_KMS_KEY_ENV):
                extra["SSEKMSKeyId"] = os.environ[SSE_KMS_KEY_ENV]
            options["s3_additional_kwargs"] = extra
        fs, path = url_to_fs(self.uri, **options)
        return fs, path.rstrip("/")

    def pull(self, zones: Collection[str] = ZONES) -> Transfer:
        """Make the local ``zones`` an exact copy of the remote ones, downloading only what differs."""
        fs, base = self.filesystem()
        remote = _remote_files(fs, base, zones)
        local = _local_files(self.root, zones)
        state = self._load_state()
        transfer = Transfer()
        for rel, version in sorted(remote.items()):
            known = state.get(rel)
            if known and known["remote"] == version and local.get(rel) == (known["size"], known["mtime_ns"]):
                continue
            target = self.root / rel
            make_private_dir(target.parent)
            tmp = target.with_name(f".{target.name}.pull.tmp")
            fs.get_file(f"{base}/{rel}", str(tmp))
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
            state[rel] = _local_record(target, version)
            transfer.downloaded.append(rel)
        for rel in sorted(set(local) - set(remote)):
            (self.root / rel).unlink()
            transfer.deleted.append(rel)
        for rel in [rel for rel in state if _zone(rel) in zones and rel not in remote]:
            del state[rel]
        self._save_state(state)
        _seal_published(self.root, zones)
        log.info("pulled %s from the object store: %s", ", ".join(zones), transfer.counts())
        return transfer

    def push(self, only: Collection[str] | None = None) -> Transfer:
        """Upload what changed locally since the last transfer and delete what was removed; ``only``: these files."""
        fs, base = self.filesystem()
        local = _local_files(self.root, ZONES)
        state = self._load_state()
        wanted = (lambda rel: rel in only) if only is not None else (lambda rel: True)
        changed = []
        for rel, (size, mtime_ns) in local.items():
            known = state.get(rel)
            if not wanted(rel) or (known and (known["size"], known["mtime_ns"]) == (size, mtime_ns)):
                continue
            if known and known["size"] == size and known["md5"] == _md5(self.root / rel):
                state[rel] = known | {"mtime_ns": mtime_ns}  # rewritten with the same bytes: nothing to send
                continue
            changed.append(rel)
        removed = sorted(rel for rel in state if rel not in local and wanted(rel))
        transfer = Transfer()
        try:
            data = [rel for rel in changed if _commit_rank(rel) == 0]
            commits = sorted((rel for rel in changed if _commit_rank(rel) > 0), key=_commit_rank)
            for rel in sorted(data):
                state[rel] = self._upload(fs, base, rel)
                transfer.uploaded.append(rel)
            for rel in removed:
                fs.rm_file(f"{base}/{rel}")
                del state[rel]
                transfer.deleted.append(rel)
            for rel in commits:
                state[rel] = self._upload(fs, base, rel)
                transfer.uploaded.append(rel)
        finally:
            self._save_state(state)  # what did reach the store is recorded even if a later transfer failed
        log.info("pushed to the object store: %s", transfer.counts())
        return transfer

    def _upload(self, fs: Any, base: str, rel: str) -> dict[str, Any]:
        remote_path = f"{base}/{rel}"
        fs.put_file(str(self.root / rel), remote_path)
        fs.invalidate_cache(remote_path)
        return _local_record(self.root / rel, _version(fs.info(remote_path)))

    def _load_state(self) -> dict[str, dict[str, Any]]:
        path = self.directory / STATE_FILE
        return json.loads(path.read_text())["files"] if path.exists() else {}

    def _save_state(self, files: dict[str, dict[str, Any]]) -> None:
        path = self.directory / STATE_FILE
        write_text_atomic(path, json.dumps({"uri": self.uri, "files": files}, indent=1, sort_keys=True))


def work_dir() -> Path:
    """Where working copies live: ``$MEDCURATE_WORK_DIR``, else the system temp dir (worker-local scratch)."""
    return Path(os.environ.get(WORK_DIR_ENV) or Path(tempfile.gettempdir()) / "medcurate-work")


def working_copy(uri: str) -> WorkingCopy:
    """The (owner-only, since it holds raw PHI) working copy of ``uri``, created on first use."""
    uri = uri.rstrip("/")
    directory = make_private_dir(work_dir() / hashlib.sha256(uri.encode()).hexdigest()[:20])
    origin = directory / ORIGIN_FILE
    if not origin.exists():
        origin.write_text(json.dumps({"uri": uri}))
    make_private_dir(directory / LOCAL_ROOT)
    return WorkingCopy(uri=uri, directory=directory)


def working_copy_of(local_root: Path) -> WorkingCopy | None:
    """The working copy whose zones are at ``local_root``, or None for a plain local data root."""
    origin = local_root.parent / ORIGIN_FILE
    if local_root.name != LOCAL_ROOT or not origin.is_file():
        return None
    uri = json.loads(origin.read_text())["uri"]
    if local_root.parent.name != hashlib.sha256(uri.encode()).hexdigest()[:20]:
        return None
    return WorkingCopy(uri=uri, directory=local_root.parent)


def checkout(data_root: str | Path, zones: Collection[str] = ZONES) -> Path:
    """The local directory to work in: a URI is pulled (``zones`` only) into its working copy first."""
    if not is_uri(data_root):
        return Path(data_root)
    copy = working_copy(str(data_root))
    with exclusive(copy.root):
        copy.pull(zones)
    return copy.root


def pull(local_root: Path) -> None:
    """Refresh a working copy from its object store before a stage (no-op for a local data root)."""
    copy = working_copy_of(local_root)
    if copy is not None:
        with exclusive(local_root):
            copy.pull()


def push(local_root: Path, only: Iterable[Path] | None = None) -> None:
    """Publish a working copy's changes (``only``: these files) to its object store; no-op for a local root."""
    copy = working_copy_of(local_root)
    if copy is not None:
        with exclusive(local_root):
            copy.push(None if only is None else {p.relative_to(local_root).as_posix() for p in only})


@contextmanager
def exclusive(local_root: Path) -> Iterator[None]:
    """Hold a working copy from a pull to the push of what was done in between (no-op for a local root).

    Tasks on one worker (and, with ``MEDCURATE_WORK_DIR`` on a shared volume, on every worker) share the
    working copy of a URI: without this lock one task's pull would delete the files another task has written
    but not pushed yet.  Re-entrant within a process, so a stage can hold it around pulls and pushes.
    """
    copy = working_copy_of(local_root)
    holder = (copy.directory if copy else None, threading.get_ident())
    if copy is None or holder in _HELD:
        yield
        return
    with (copy.directory / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _HELD.add(holder)
        try:
            yield
        finally:
            _HELD.discard(holder)
            fcntl.flock(handle, fcntl.LOCK_UN)


def display(local_root: Path) -> str:
    """The data root as users named it: the URI for a working copy, else the path."""
    copy = working_copy_of(local_root)
    return copy.uri if copy is not None else str(local_root)


def _zone(rel: str) -> str:
    return rel.split("/", 1)[0]


def _commit_rank(rel: str) -> int:
    return next((i + 1 for i, pattern in enumerate(COMMIT_ORDER) if fnmatch.fnmatch(rel, pattern)), 0)


def _transferable(rel: str, zones: Collection[str]) -> bool:
    return "/" in rel and _zone(rel) in zones and not rel.endswith(".tmp")


def _version(info: dict[str, Any]) -> str:
    """The remote object's version: its ETag where the store has one, else size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    return str(etag) if etag else f"{info.get('size')}:{info.get('mtime') or info.get('LastModified')}"


def _remote_files(fs: Any, base: str, zones: Collection[str]) -> dict[str, str]:
    fs.invalidate_cache(base)
    if not fs.exists(base):
        return {}
    found = fs.find(base, detail=True)
    files = {}
    for path, info in found.items():
        rel = path[len(base) + 1 :]
        if info.get("type") != "directory" and _transferable(rel, zones):
            files[rel] = _version(info)
    return files


def _local_files(root: Path, zones: Collection[str]) -> dict[str, tuple[int, int]]:
    files = {}
    for zone in zones:
        for path in (root / zone).rglob("*") if (root / zone).is_dir() else []:
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not path.is_symlink() and _transferable(rel, zones):
                stat = path.stat()
                files[rel] = (stat.st_size, stat.st_mtime_ns)
    return files


def _local_record(path: Path, remote_version: str) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": _md5(path), "remote": remote_version}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _seal_published(root: Path, zones: Collection[str]) -> None:
    """Pulled published zones are read-only, as the stage that published them left them."""
    from medcurate.core.names import PUBLISHING_STAGES
    from medcurate.core.sealing import seal

    for zone in set(PUBLISHING_STAGES.values()) & set(zones):
        seal(root / zone)

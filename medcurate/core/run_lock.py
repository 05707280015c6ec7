"""One run at a time per data root: ``medcurate run`` and ``medcurate erase`` hold the root's run lock.

Two runs on one root would pull, rewrite and publish the same zones under each other (the audit log is
rewritten whole, a stage's staging directory is shared), so the second one refuses at once, naming the run
that holds the root, instead of crashing both.  Refusing rather than waiting keeps a scheduler's retry policy
in charge of when to try again.

- A local root: ``flock`` on ``<root>/.run.lock``.  The kernel releases it when the holder dies, so a killed
  run never leaves the root locked.
- An object-store root: the object ``<uri>/.run.lock``, created only if absent (S3 conditional write,
  ``If-None-Match: *``), which no two machines can both win.  The store cannot tell that a holder died, so
  the object names its host and process: a lock left by a dead process of this host is taken over; one from
  another host is reported, with the object to delete once nobody runs.  The working copy is locked too
  (the local rule above), for tasks sharing it.

The lock files sit beside the zones, never inside one, so they are neither mirrored nor sealed.  Airflow's
per-stage tasks (``medcurate stage``) do not take it: the mapped ingest tasks of one DAG run write the root
side by side on purpose; the pool and DAG ``max_active_runs`` keep DAG runs apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medcurate.core import storage

LOCK_NAME = ".run.lock"


class RootBusy(RuntimeError):
    """Another run holds the data root; the message names it and the root, never any data."""


@contextmanager
def run_lock(local_root: Path, run_id: str) -> Iterator[None]:
    """Hold the data root (and, for a working copy, its object store) for ``run_id``; raise ``RootBusy`` if taken."""
    holder = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "since": _now()}
    local_root.mkdir(parents=True, exist_ok=True)
    with (local_root / LOCK_NAME).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RootBusy(_busy_message(storage.display(local_root), _parse(handle.read()))) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(holder))
            handle.flush()
            copy = storage.working_copy_of(local_root)
            if copy is None:
                yield
            else:
                with _remote_lock(copy, holder):
                    yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _remote_lock(copy: storage.WorkingCopy, holder: dict[str, Any]) -> Iterator[None]:
    fs, base = copy.filesystem()
    path = f"{base}/{LOCK_NAME}"
    if not _create(fs, path, holder):
        current = _read(fs, path)
        if not _left_by_dead_process(current):
            raise RootBusy(_busy_message(copy.uri, current, stale_hint=f"{copy.uri}/{LOCK_NAME}"))
        fs.rm_file(path)
        if not _create(fs, path, holder):
            raise RootBusy(_busy_message(copy.uri, _read(fs, path)))
    try:
        yield
    finally:
        if _read(fs, path).get("run_id") == holder["run_id"]:
            fs.rm_file(path)


def _create(fs: Any, path: str, holder: dict[str, Any]) -> bool:
    """Write the lock object only if none exists; False when one does."""
    try:
        with fs.open(path, "xb") as out:
            out.write(json.dumps(holder).encode())
    except FileExistsError:
        return False
    return True


def _read(fs: Any, path: str) -> dict[str, Any]:
    fs.invalidate_cache(path)
    try:
        return _parse(fs.cat_file(path).decode())
    except FileNotFoundError:
        return {}


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _left_by_dead_process(holder: dict[str, Any]) -> bool:
    """A lock object of this host whose process is gone: its run died without releasing it."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _busy_message(root: str, holder: dict[str, Any], stale_hint: str | None = None) -> str:
    who = f"run {holder['run_id']} (host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('since')})"
    message = f"data root {root} is in use by {who if holder.get('run_id') else 'another run'}; try again once it ends"
    if stale_hint:
        message += f"; if no run is active there, delete {stale_hint}"
    return message


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

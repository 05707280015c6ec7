"""Which quarantined input-file copies hold a patient: what ``erase --patient`` deletes and then verifies.

A file ingest refused whole (malformed, too large, a bomb) is kept in ``quarantine/files/<source>/`` so it can
be fixed and replayed.  It was never parsed, so it has no rows to remove: the only way to know whether it holds
the erased patient is to search its bytes for the patient's key and stated identifiers (the same whole-word,
case-insensitive rule erasure verifies the published zones with).  A copy that names the patient is deleted
whole; its index record (reason, opaque file id, no PHI) stays as evidence that the file was refused.

The search streams the file a MiB at a time, gunzipped when its content says gzip, and counts what it reads
against the source's ``max_file_bytes``: a copy too big (or too damaged) to be read to its end cannot be shown
free of the patient, so it is deleted too, and a bomb never fills memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from medcurate.core.spec import CorpusSpec
from medcurate.core.zones import Zones
from pipelines.ingest.base import BadInput
from pipelines.ingest.files import open_binary, read_errors_as_bad_input
from pipelines.ingest.limits import Limits, default_limits

CHUNK = 1 << 20


def copies(zones: Zones) -> Iterator[tuple[str, Path]]:
    """(source name, path) of every quarantined input-file copy."""
    root = zones.quarantine / "files"
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        if path.is_file():
            yield path.relative_to(root).parts[0], path


class _Needles:
    """The identifiers as whole words in raw bytes (UTF-8), case-insensitive (ASCII, as ``re`` on bytes).

    A plain substring test on the lowered block comes first: it runs at memory speed, where the word-boundary
    regex alone takes seconds per GiB of a bomb's filler."""

    def __init__(self, identifiers: set[str]) -> None:
        values = sorted({i.encode() for i in identifiers if i}, key=lambda v: (-len(v), v))
        self.lowered = [v.lower() for v in values]
        self.overlap = len(values[0]) + 1
        alternatives = b"|".join(re.escape(v) for v in values)
        self.pattern = re.compile(rb"(?<![A-Za-z0-9])(?:" + alternatives + rb")(?![A-Za-z0-9])", re.IGNORECASE)

    def found_in(self, window: bytes) -> bool:
        lowered = window.lower()
        return any(v in lowered for v in self.lowered) and self.pattern.search(window) is not None


def holding(zones: Zones, spec: CorpusSpec, identifiers: set[str]) -> list[Path]:
    """The copies that name one of ``identifiers``, or cannot be read to their end to show they do not."""
    if not any(identifiers):
        return []
    needles = _Needles(identifiers)
    limits = {s.name: Limits.from_options(s.options.get("limits")) for s in spec.sources}
    return [path for source, path in copies(zones) if _names(path, needles, limits.get(source) or default_limits())]


def _names(path: Path, needles: _Needles, limits: Limits) -> bool:
    if path.stat().st_size == 0:
        return False
    tail = b""
    try:
        with read_errors_as_bad_input(), open_binary(path, limits) as stream:
            while block := stream.read(CHUNK):
                window = tail + block
                if needles.found_in(window):
                    return True
                tail = window[-needles.overlap :]
    except BadInput:
        return True  # unreadable to its end: it may hold the patient past where reading stopped
    return False

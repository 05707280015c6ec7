"""Quarantine: where bad input goes, with a reason, instead of being silently dropped.

A whole file that cannot be parsed is copied to ``quarantine/files/`` (owner-only: it may hold PHI) and one
record names it; a single bad record (an invalid NDJSON line, a document that fails an expectation) gets one
record.  Records go to ``quarantine/<stage>/<source>.parquet``.  Reasons and details are written by our
code, never copied from the input, so the quarantine index itself is safe to count in reports.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq

from medcurate.core.names import STAGE_NAMES
from medcurate.core.schema import QUARANTINE_SCHEMA
from medcurate.core.zones import RowGroupWriter, Zones, make_private_dir

# Records per row group of a stage's quarantine file: what a writer holds at once (a few MB of dicts), so a run
# that drops a third of a million documents as duplicates does not hold a record of each until the end.
QUARANTINE_GROUP_ROWS = 8192


class Rejected(Exception):
    """Why a file or a record goes to quarantine: ``reason`` is a short code, ``detail`` a sentence without PHI.

    Stages raise subclasses of it (a file ingest cannot read, an HL7 message that makes no document, a payload
    the deid stage cannot use); the quarantine record carries the two fields, never the input.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class QuarantineWriter:
    """Writes one stage's quarantine records as they come, a row group at a time, each source's file under a
    temporary name until ``flush`` puts it in place.  Creating it clears that stage's earlier records (and a
    crashed attempt's temporary files): a retried stage rewrites its own quarantine, and stale records of a failed
    attempt must not linger.

    With ``source`` given, the writer belongs to one unit of the stage (ingest runs each source as its own
    task): it clears and writes only that source's records, so units running side by side never erase each
    other's.
    """

    def __init__(self, zones: Zones, stage: str, run_id: str, source: str | None = None) -> None:
        self.zones = zones
        self.stage = stage
        self.run_id = run_id
        self.source = source
        self._writers: dict[str, RowGroupWriter] = {}
        names = f"{source}.parquet" if source else "*.parquet"
        for stale in [*(zones.quarantine / stage).glob(names), *(zones.quarantine / stage).glob(f".{names}.tmp")]:
            stale.unlink()

    def add(
        self,
        *,
        source: str,
        source_file: str,
        reason: str,
        detail: str = "",
        source_sha256: str | None = None,
        position: str | None = None,
        doc_id: str | None = None,
    ) -> None:
        if self.source is not None and source != self.source:
            raise ValueError(f"this quarantine writer belongs to source '{self.source}', not '{source}'")
        if source not in self._writers:
            path = self.zones.quarantine / self.stage / f"{source}.parquet"
            self._writers[source] = RowGroupWriter(path, QUARANTINE_SCHEMA, QUARANTINE_GROUP_ROWS, zones=self.zones)
        self._writers[source].add(
            {
                "run_id": self.run_id,
                "stage": self.stage,
                "source": source,
                "source_file": source_file,
                "source_sha256": source_sha256,
                "position": position,
                "doc_id": doc_id,
                "reason": reason,
                "detail": detail,
            }
        )

    def add_file(
        self, *, source: str, path: Path, source_file: str, sha256: str, reason: str, detail: str = ""
    ) -> None:
        """Quarantine a whole input file: keep a copy beside the reason so it can be fixed and replayed.

        The copy keeps the file's name (this zone is owner-only); the record names it by ``source_file``, its
        opaque id, because the catalog publishes the index."""
        target_dir = self.zones.quarantine / "files" / source
        make_private_dir(target_dir)
        target = target_dir / f"{sha256[:16]}-{path.name}"
        shutil.copyfile(path, target)
        target.chmod(0o600)
        self.add(source=source, source_file=source_file, source_sha256=sha256, reason=reason, detail=detail)

    def count(self, source: str | None = None) -> int:
        if source is not None:
            return self._writers[source].rows if source in self._writers else 0
        return sum(writer.rows for writer in self._writers.values())

    def flush(self) -> list[Path]:
        """Put one Parquet file per source in place for this stage (replacing an earlier attempt's)."""
        return [self._writers[source].commit() for source in sorted(self._writers)]


def quarantined_upstream(zones: Zones, stage: str) -> set[str]:
    """doc_ids that the stages before ``stage`` (in run order) quarantined; ``stage`` skips them.

    Only earlier stages count.  On a rerun the quarantine still holds what the previous run's later stages
    found (curate's duplicates): skipping those would keep them from ever reaching the stage that found them,
    which clears its records when it runs again, so they would vanish without a reason and come back on the
    run after.  Earlier stages have always rerun first, so their records are this run's.

    Only the ``doc_id`` column is read, so no quarantined text is loaded.
    """
    earlier = STAGE_NAMES[: STAGE_NAMES.index(stage)]
    found: set[str] = set()
    for path in sorted(zones.quarantine.glob("*/*.parquet")):
        if path.parent.name not in earlier or path.name.startswith("."):
            continue
        found.update(d for d in pq.read_table(path, columns=["doc_id"]).column("doc_id").to_pylist() if d)
    return found

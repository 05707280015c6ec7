"""What the deid stage keeps about each document while its handlers work: counts, quarantine, PHI events.

The text and DICOM handlers write into one ``DeidLedger``, so the stage's report, its quarantine records and the
catalog's ``deid_events`` (counts per document and entity type, never text) come out the same whichever handler
de-identified a document.  ``finish`` makes the output row of the de-identified zone.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from governance.catalog import DEID_EVENTS_FILE, DEID_EVENTS_SCHEMA
from medcurate.core.context import RunContext, StageReport
from medcurate.core.keys import pseudonym
from medcurate.core.quarantine import QuarantineWriter
from medcurate.core.zones import RowGroupWriter

STAGE = "deid"
# Rows per row group of deid_events.parquet: what the driver holds of it at once (about 25 MB of dicts).
EVENT_GROUP_ROWS = 65_536


class DeidLedger:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.report = StageReport(stage=STAGE, run_id=ctx.run_id)
        self.quarantine = QuarantineWriter(ctx.zones, STAGE, ctx.run_id)
        self.phi_by_source: dict[str, Counter[str]] = defaultdict(Counter)
        # Per document and entity type, what was replaced and how: the catalog's deid_events (counts only),
        # written as the documents come (a run of notes has several per document).
        self.events = RowGroupWriter(ctx.zones.governance / DEID_EVENTS_FILE, DEID_EVENTS_SCHEMA, EVENT_GROUP_ROWS)

    def record_events(self, row: dict, counts: dict[str, tuple[int, str]]) -> None:
        self.events.extend(
            {"doc_id": row["doc_id"], "source": row["source"], "entity_type": label, "count": n, "operator": op}
            for label, (n, op) in sorted(counts.items())
        )

    def quarantine_row(self, row: dict, reason: str, detail: str) -> None:
        self.quarantine.add(
            source=row["source"],
            source_file=row["source_file"],
            source_sha256=row["source_sha256"],
            position=row["position"],
            doc_id=row["doc_id"],
            reason=reason,
            detail=detail,
        )
        self.report.counts(row["source"]).remove(reason)

    def finish(self, row: dict, text: str | None, metadata: dict | None) -> dict:
        """The de-identified zone's row: the raw key replaced by its pseudonym, this run's id."""
        out = {k: v for k, v in row.items() if k != "patient_key"}
        if text is not None:
            out["text"] = text
        out["metadata"] = metadata
        out["run_id"] = self.ctx.run_id
        out["patient_pseudonym"] = pseudonym(self.ctx.secret_key, row["patient_key"]) if row["patient_key"] else None
        return out

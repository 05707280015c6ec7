"""The de-identification stage: raw zone -> de-identified zone (DEID_DOCUMENT_SCHEMA), PHI counts, review sample.

Per document: the text engine finds PHI (spaCy + Presidio, on Ray actors, one engine per actor), the replacer
substitutes surrogates / shifted dates / tags, ``patient_key`` becomes ``patient_pseudonym``,
``metadata.event_time`` moves by the patient's date offset, identifying metadata is pseudonymized or dropped.
Structured records (FHIR, HL7 v2, the other cells of a CSV note) have their payload de-identified by the
rule table, and a FHIR timeline's or HL7 message's text is rendered again from it (``structured_docs.py``);
a record whose payload cannot be used is quarantined.  DICOM records go through the DICOM header
de-identifier instead; those that may carry burned-in text are quarantined.  Documents an earlier stage
quarantined are skipped.  Only counts are logged and reported.

This module reads the raw parts, hands each record to its handler (``text_handler.TextHandler`` for text and
structured records, ``dicom_handler.DicomHandler`` for DICOM) and writes what they return; the handlers record
counts, quarantine and PHI events in one ``ledger.DeidLedger``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medcurate.core.context import RunContext, StageFailed, StageReport
from medcurate.core.quarantine import quarantined_upstream
from medcurate.core.ray_runtime import ray_session
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, RAW_DOCUMENT_SCHEMA
from medcurate.core.zones import write_parquet, zone_parts
from pipelines.deid.config import DeidConfig, default_config
from pipelines.deid.dicom_handler import DicomHandler
from pipelines.deid.ledger import STAGE, DeidLedger
from pipelines.deid.review_sample import REVIEW_SAMPLE, write_review_sample
from pipelines.deid.surrogates import Replacer
from pipelines.deid.text_handler import TextHandler

log = logging.getLogger(__name__)


def _raw_parts(ctx: RunContext) -> Iterator[tuple[str, Path]]:
    for path in zone_parts(ctx.zones.raw):
        yield path.parent.relative_to(ctx.zones.raw).as_posix(), path


class DeidStage:
    def __init__(self, ctx: RunContext, config: DeidConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.ledger = DeidLedger(ctx)
        replacer = Replacer(ctx.secret_key, config)
        self.text = TextHandler(ctx.secret_key, config, replacer, self.ledger, ctx.spec.parallel)
        self.dicom = DicomHandler(ctx.secret_key, config, replacer, self.ledger)

    def process_part(self, source_dir: str, path: Path, skip: set[str]) -> Path:
        rows = pq.read_table(path, schema=RAW_DOCUMENT_SCHEMA).to_pylist()
        report = self.ledger.report
        text_rows: list[dict] = []
        out_rows: list[dict] = []
        for row in rows:
            counts = report.counts(row["source"])
            counts.input += 1
            if row["doc_id"] in skip:
                counts.remove("quarantined_earlier")
                continue
            if row["source_kind"] == "dicom":
                deid = self.dicom.handle(row)
                if deid is not None:
                    out_rows.append(deid)
            elif row["source_kind"] in self.config.text_source_kinds:
                text_rows.append(row)
            else:
                out_rows.append(self.ledger.finish(row, None, row["metadata"]))
        out_rows.extend(self.text.handle(text_rows))
        for row in out_rows:
            report.counts(row["source"]).output += 1
        out_rows.sort(key=lambda r: r["record_index"])
        target = self.ctx.zones.deid / source_dir / path.name
        return write_parquet(pa.Table.from_pylist(out_rows, schema=DEID_DOCUMENT_SCHEMA), target, self.ctx.zones)

    def run(self) -> StageReport:
        skip = quarantined_upstream(self.ctx.zones, STAGE)
        written: set[Path] = set()
        ledger = self.ledger
        try:
            with ray_session():
                try:
                    for source_dir, path in _raw_parts(self.ctx):
                        written.add(self.process_part(source_dir, path, skip).resolve())
                finally:
                    self.text.close()  # the later stages of a run share this Ray session, not these actors
            for stale in self.ctx.zones.deid.rglob("*.parquet") if self.ctx.zones.deid.exists() else []:
                if stale.resolve() not in written:
                    stale.unlink()
            ledger.quarantine.flush()
            write_review_sample(self.ctx.zones, self.text.review)
        except BaseException:
            ledger.events.abort()  # the previous run's events stay whole; no temporary file is left behind
            raise
        ledger.events.commit()
        phi_by_type: Counter[str] = Counter()
        for counts in ledger.phi_by_source.values():
            phi_by_type.update(counts)
        ledger.report.details.update(
            {
                "phi_by_type": dict(sorted(phi_by_type.items())),
                "phi_by_source": {s: dict(sorted(c.items())) for s, c in sorted(ledger.phi_by_source.items())},
                "dicom_actions": dict(sorted(self.dicom.actions.items())),
                "structured_actions": dict(sorted(self.text.structured_actions.items())),
                "extra_keys_dropped": dict(sorted(self.text.extra_dropped.items())),
                "operators": dict(sorted(self.config.operators.items())),
                "quarantined_earlier_skipped": len(skip),
                "review_sample": str(self.ctx.zones.governance / REVIEW_SAMPLE),
            }
        )
        log.info(
            "deid: %d documents in, %d out, %d PHI spans replaced",
            ledger.report.total_input,
            ledger.report.total_output,
            sum(phi_by_type.values()),
        )
        return ledger.report


def run(ctx: RunContext) -> StageReport:
    """De-identify the raw zone into the deid zone.  Raises ``StageFailed`` when nothing can be read."""
    if not any(True for _ in _raw_parts(ctx)):
        raise StageFailed(f"deid: no raw Parquet parts under {ctx.zones.raw}")
    return DeidStage(ctx, default_config()).run()

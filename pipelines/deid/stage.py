"""The de-identification stage: raw zone -> de-identified zone (DEID_DOCUMENT_SCHEMA), PHI counts, review sample.

Per document: the text engine finds PHI (spaCy + Presidio, on Ray actors, one engine per actor), the replacer
substitutes surrogates / shifted dates / tags, ``patient_key`` becomes ``patient_pseudonym``,
``metadata.event_time`` moves by the patient's date offset, identifying metadata is pseudonymized or dropped.
Structured records (FHIR, HL7 v2, the other cells of a CSV note) have their payload de-identified by the
rule table, and a FHIR timeline's or HL7 message's text is rendered again from it (``structured_docs.py``);
a record whose payload cannot be used is quarantined.  DICOM records go through the DICOM header
de-identifier instead; those that may carry burned-in text are quarantined.  Documents an earlier stage
quarantined are skipped.  Only counts are logged and reported.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from governance.catalog import DEID_EVENTS_FILE, DEID_EVENTS_SCHEMA
from medcurate.context import RunContext, StageFailed, StageReport
from medcurate.keys import pseudonym
from medcurate.quarantine import QuarantineWriter, quarantined_doc_ids
from medcurate.ray_runtime import ray_session
from medcurate.schema import DEID_DOCUMENT_SCHEMA, RAW_DOCUMENT_SCHEMA
from medcurate.zones import write_parquet
from pipelines.deid.config import DeidConfig, default_config
from pipelines.deid.engine import DeidEngine, PhiSpan
from pipelines.deid.structured_docs import (
    PAYLOAD_KEYS,
    PayloadError,
    StructuredPayloads,
    StructuredResult,
    renders_text,
)
from pipelines.deid.surrogates import DeidText, Replacer

STAGE = "deid"
log = logging.getLogger(__name__)

BATCH_DOCS = 64
REVIEW_PER_SOURCE = 3
REVIEW_SAMPLE = "deid_review_sample.jsonl"
DICOM_JSON_KEY = "dicom_json"
DICOM_UID_FIELDS = ("study_uid", "series_uid", "sop_instance_uid")
BURNED_IN = "possible_burned_in_text"


class _Analyzer:
    """Ray actor body: one DeidEngine per worker process, spans out (no key, no replacement in workers)."""

    def __init__(self) -> None:
        self.engine = DeidEngine()

    def analyze(self, texts: list[str]) -> list[list[tuple[int, int, str, float]]]:
        return [[(s.start, s.end, s.label, s.score) for s in spans] for spans in self.engine.analyze_batch(texts)]


class RayTextAnalyzer:
    """Spread batches of texts over an actor pool, by default one actor per CPU of the Ray cluster."""

    def __init__(self, workers: int | None = None) -> None:
        import ray
        from ray.util import ActorPool

        n = workers or max(1, int(ray.available_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1)(_Analyzer)
        self.actors = [actor.remote() for _ in range(n)]
        self.pool = ActorPool(self.actors)

    def analyze(self, texts: list[str]) -> list[list[PhiSpan]]:
        batches = [texts[i : i + BATCH_DOCS] for i in range(0, len(texts), BATCH_DOCS)]
        out: list[list[PhiSpan]] = []
        for result in self.pool.map(lambda a, batch: a.analyze.remote(batch), batches):
            out.extend([PhiSpan(*s) for s in spans] for spans in result)
        return out


def _raw_parts(ctx: RunContext) -> Iterator[tuple[str, Path]]:
    raw = ctx.zones.raw
    if not raw.exists():
        return
    for path in sorted(raw.rglob("*.parquet")):
        if not path.name.startswith("."):
            yield path.parent.relative_to(raw).as_posix(), path


class DeidStage:
    def __init__(self, ctx: RunContext, config: DeidConfig) -> None:
        self.ctx = ctx
        self.config = config
        self.replacer = Replacer(ctx.secret_key, config)
        self.report = StageReport(stage=STAGE, run_id=ctx.run_id)
        self.quarantine = QuarantineWriter(ctx.zones, STAGE, ctx.run_id)
        self.phi_by_source: dict[str, Counter[str]] = defaultdict(Counter)
        self.dicom_actions: Counter[str] = Counter()
        self.structured_actions: Counter[str] = Counter()
        self.extra_dropped: Counter[str] = Counter()
        self.review: list[dict[str, Any]] = []
        # Per document and entity type, what was replaced and how: the catalog's deid_events (counts only).
        self.events: list[dict[str, Any]] = []
        self.analyzer: RayTextAnalyzer | None = None
        self._dicom = None

    # ---- per part ----
    def process_part(self, source_dir: str, path: Path, skip: set[str]) -> Path:
        rows = pq.read_table(path, schema=RAW_DOCUMENT_SCHEMA).to_pylist()
        text_rows: list[dict] = []
        out_rows: list[dict] = []
        for row in rows:
            counts = self.report.counts(row["source"])
            counts.input += 1
            if row["doc_id"] in skip:
                counts.remove("quarantined_earlier")
                continue
            if row["source_kind"] == "dicom":
                deid = self._dicom_row(row)
                if deid is not None:
                    out_rows.append(deid)
            elif row["source_kind"] in self.config.text_source_kinds:
                text_rows.append(row)
            else:
                out_rows.append(self._finish(row, None, row["metadata"]))
        out_rows.extend(self._text_rows(text_rows))
        for row in out_rows:
            self.report.counts(row["source"]).output += 1
        out_rows.sort(key=lambda r: r["record_index"])
        target = self.ctx.zones.deid / source_dir / path.name
        return write_parquet(pa.Table.from_pylist(out_rows, schema=DEID_DOCUMENT_SCHEMA), target, self.ctx.zones)

    def _text_rows(self, rows: list[dict]) -> list[dict]:
        """Free text, titles and the free-text leaves of structured payloads, analyzed in one Ray batch."""
        if not rows:
            return []
        payloads = StructuredPayloads(self.ctx.secret_key, self.config, self.replacer)
        leaves = payloads.collect(rows)
        for row in rows:
            if row["doc_id"] in payloads.failures:
                failure = payloads.failures[row["doc_id"]]
                self._quarantine(row, failure.reason, failure.detail)
        rows = [row for row in rows if row["doc_id"] not in payloads.failures]
        narrative = [row for row in rows if not renders_text(row)]
        titles = [(row["metadata"] or {}).get("title") or "" for row in rows]
        if self.analyzer is None:
            self.analyzer = RayTextAnalyzer()
        spans = self.analyzer.analyze([row["text"] for row in narrative] + titles + leaves)
        text_spans = {row["doc_id"]: s for row, s in zip(narrative, spans, strict=False)}
        title_spans = spans[len(narrative) : len(narrative) + len(rows)]
        leaf_spans = dict(zip(leaves, spans[len(narrative) + len(rows) :], strict=True))
        out = []
        for row, titled in zip(rows, title_spans, strict=True):
            try:
                structured = payloads.apply(row, leaf_spans)
            except PayloadError as failure:  # the same walk as in collect: not expected, but never fatal
                self._quarantine(row, failure.reason, failure.detail)
                continue
            out.append(self._text_row(row, text_spans.get(row["doc_id"]), titled, structured))
        return out

    def _text_row(
        self,
        row: dict,
        text_spans: list[PhiSpan] | None,
        title_spans: list[PhiSpan],
        structured: StructuredResult | None,
    ) -> dict:
        """One de-identified document: its text from the text engine's spans, or rendered from its payload."""
        patient = row["patient_key"] or ""
        labels = Counter(s.label for s in (text_spans or []) + title_spans)
        events = {}
        if structured is not None:
            labels.update(structured.phi)
            self.structured_actions.update(structured.actions)
            for name, n in structured.actions.items():
                rule, _, action = name.rpartition(":")
                events[rule] = (events.get(rule, (0, action))[0] + n, action)
        self.phi_by_source[row["source"]].update(labels)
        events.update({label: (n, self.config.operator(label)) for label, n in labels.items()})
        self._record_events(row, events)
        metadata = self._clinical_metadata(row["metadata"], patient, structured)
        if metadata.get("title"):
            metadata["title"] = self.replacer.apply(metadata["title"], title_spans, patient).text
        if text_spans is None:
            return self._finish(row, structured.text if structured else None, metadata)
        deid = self.replacer.apply(row["text"], text_spans, patient)
        self._maybe_review(row, deid)
        return self._finish(row, deid.text, metadata)

    def _clinical_metadata(self, metadata: dict | None, patient: str, structured: StructuredResult | None) -> dict:
        """Shifted event time, pseudonymized encounter, allow-listed extra keys.  A raw structured payload is
        never copied: its de-identified version takes its place when the allow-list keeps that key."""
        metadata = dict(metadata or {})
        if metadata.get("event_time") is not None:
            metadata["event_time"] = self.replacer.shift_datetime(metadata["event_time"], patient)
        if metadata.get("encounter_id"):
            metadata["encounter_id"] = pseudonym(self.ctx.secret_key, metadata["encounter_id"], "encounter")
        kept = []
        for key, value in metadata.get("extra") or []:
            if key in PAYLOAD_KEYS.values():
                continue
            if key in self.config.extra_keep_keys:
                kept.append((key, value))
            else:
                self.extra_dropped[key] += 1
        if structured is not None:
            if structured.key in self.config.extra_keep_keys:
                kept.append((structured.key, structured.payload))
            else:
                self.extra_dropped[structured.key] += 1
        metadata["extra"] = sorted(kept) or None
        return metadata

    def _dicom_row(self, row: dict) -> dict | None:
        from pipelines.deid.dicom import DicomDeidentifier
        from pipelines.deid.dicom_uids import remap_uid

        if self._dicom is None:
            self._dicom = DicomDeidentifier(self.ctx.secret_key)
        metadata = dict(row["metadata"] or {})
        extra = dict(metadata.get("extra") or [])
        header = extra.get(DICOM_JSON_KEY)
        if not header:
            self._quarantine(row, "missing_dicom_header", "no DICOM JSON header in metadata.extra")
            return None
        try:
            result = self._dicom.deidentify_json(header)
        except Exception as exc:  # a malformed header must not stop the stage; the record is held back
            self._quarantine(row, "dicom_deid_failed", f"DICOM de-identification raised {type(exc).__name__}")
            return None
        self.dicom_actions.update(result.actions)
        if not result.publishable:
            self._quarantine(row, result.reason or BURNED_IN, "pixel data may contain burned-in text")
            return None
        changed = {f"DICOM_{action}": (n, f"annex_e_{action}") for action, n in result.actions.items() if action != "K"}
        self._record_events(row, changed)
        patient = row["patient_key"] or ""
        if metadata.get("event_time") is not None:
            metadata["event_time"] = self.replacer.shift_datetime(metadata["event_time"], patient)
        for field in DICOM_UID_FIELDS:
            if metadata.get(field):
                metadata[field] = remap_uid(self.ctx.secret_key, metadata[field])
        extra[DICOM_JSON_KEY] = result.dicom_json
        metadata["extra"] = sorted(
            (k, v) for k, v in extra.items() if k == DICOM_JSON_KEY or k in self.config.extra_keep_keys
        )
        self.phi_by_source[row["source"]]["DICOM_ELEMENTS"] += sum(
            n for action, n in result.actions.items() if action != "K"
        )
        return self._finish(row, result.text, metadata)

    def _record_events(self, row: dict, counts: dict[str, tuple[int, str]]) -> None:
        self.events.extend(
            {"doc_id": row["doc_id"], "source": row["source"], "entity_type": label, "count": n, "operator": op}
            for label, (n, op) in sorted(counts.items())
        )

    def _quarantine(self, row: dict, reason: str, detail: str) -> None:
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

    def _finish(self, row: dict, text: str | None, metadata: dict | None) -> dict:
        out = {k: v for k, v in row.items() if k != "patient_key"}
        if text is not None:
            out["text"] = text
        out["metadata"] = metadata
        out["run_id"] = self.ctx.run_id
        out["patient_pseudonym"] = pseudonym(self.ctx.secret_key, row["patient_key"]) if row["patient_key"] else None
        return out

    def _maybe_review(self, row: dict, deid: DeidText) -> None:
        if sum(1 for r in self.review if r["source"] == row["source"]) >= REVIEW_PER_SOURCE:
            return
        self.review.append(
            {
                "doc_id": row["doc_id"],
                "source": row["source"],
                "doc_type": row["doc_type"],
                "text": mark_replacements(deid),
                "replacements": [
                    {"start": r.start, "end": r.end, "label": r.label, "operator": r.operator}
                    for r in deid.replacements
                ],
            }
        )

    # ---- whole stage ----
    def run(self) -> StageReport:
        skip = quarantined_doc_ids(self.ctx.zones, STAGE)
        written: set[Path] = set()
        with ray_session():
            for source_dir, path in _raw_parts(self.ctx):
                written.add(self.process_part(source_dir, path, skip).resolve())
        for stale in self.ctx.zones.deid.rglob("*.parquet") if self.ctx.zones.deid.exists() else []:
            if stale.resolve() not in written:
                stale.unlink()
        self.quarantine.flush()
        self._write_review()
        write_parquet(
            pa.Table.from_pylist(self.events, schema=DEID_EVENTS_SCHEMA), self.ctx.zones.governance / DEID_EVENTS_FILE
        )
        phi_by_type: Counter[str] = Counter()
        for counts in self.phi_by_source.values():
            phi_by_type.update(counts)
        self.report.details.update(
            {
                "phi_by_type": dict(sorted(phi_by_type.items())),
                "phi_by_source": {s: dict(sorted(c.items())) for s, c in sorted(self.phi_by_source.items())},
                "dicom_actions": dict(sorted(self.dicom_actions.items())),
                "structured_actions": dict(sorted(self.structured_actions.items())),
                "extra_keys_dropped": dict(sorted(self.extra_dropped.items())),
                "operators": dict(sorted(self.config.operators.items())),
                "quarantined_earlier_skipped": len(skip),
                "review_sample": str(self.ctx.zones.governance / REVIEW_SAMPLE),
            }
        )
        log.info(
            "deid: %d documents in, %d out, %d PHI spans replaced",
            self.report.total_input,
            self.report.total_output,
            sum(phi_by_type.values()),
        )
        self.report.save(self.ctx)
        return self.report

    def _write_review(self) -> None:
        path = self.ctx.zones.governance / REVIEW_SAMPLE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as fh:
            for record in self.review:
                fh.write(json.dumps(record) + "\n")


def mark_replacements(deid: DeidText) -> str:
    """The de-identified text with every replacement wrapped in «» for a human residual-risk review."""
    parts = []
    pos = 0
    for r in deid.replacements:
        parts.append(deid.text[pos : r.start])
        parts.append(f"«{deid.text[r.start : r.end]}»")
        pos = r.end
    parts.append(deid.text[pos:])
    return "".join(parts)


def run(ctx: RunContext) -> StageReport:
    """De-identify the raw zone into the deid zone.  Raises ``StageFailed`` when nothing can be read."""
    if not any(True for _ in _raw_parts(ctx)):
        raise StageFailed(f"deid: no raw Parquet parts under {ctx.zones.raw}")
    return DeidStage(ctx, default_config()).run()

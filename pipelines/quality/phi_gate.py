"""The residual-PHI gate: an independent check of every de-identified document before it can be published.

De-identification is a model and misses things.  The gate does not reuse its detections; it looks again:

* pattern scans (phi_gate.yaml): SSN, phone, e-mail, MRN-like numbers after a record-number label;
* the patient's own identifiers from the raw zone (raw_identifiers.py: names, MRN and other ids, birth date,
  address parts, phone, e-mail), searched verbatim, case-insensitively, as whole words, in that patient's
  de-identified documents.  Raw and de-identified documents are joined by ``doc_id``, which every zone keeps;
* full dates that survived unshifted: a date written identically in a document's raw and de-identified
  text that is not the shifted form of one of its raw dates.

What is scanned is the text and the de-identified structured payloads kept in ``metadata.extra``
(``extra_keys`` in phi_gate.yaml: FHIR JSON, HL7 message, CSV row), since trainers receive those too.

Any hit blocks the document (quarantine reason ``residual_phi:<kind>``, detail: hit counts by kind).  The
counts go to the report; the matched strings are never logged, recorded or returned.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from medcurate.core.spec import CorpusSpec
from medcurate.core.zones import Zones, zone_parts
from medcurate.formats.date_text import shift_date_text
from pipelines.quality.id_lookup import IdLookup
from pipelines.quality.raw_identifiers import identifiers, searchable
from pipelines.quality.steps import Doc, Ledger, TwoPassStep

GATE_FILE = Path(__file__).with_name("phi_gate.yaml")
RAW_COLUMNS = ["doc_id", "source_kind", "doc_type", "patient_key", "text", "metadata"]
# Patients whose compiled identifier patterns the gate keeps at once.
PATTERN_CACHE = 4096
# Order of precedence when one document has hits of several kinds: its quarantine reason is the first.
KIND_ORDER = ("name", "identifier", "birth_date", "address", "phone", "email", "ssn", "mrn", "unshifted_date")


@dataclass(frozen=True)
class GateConfig:
    source_kinds: frozenset[str]
    extra_keys: frozenset[str]
    patterns: dict[str, re.Pattern[str]]
    full_date: re.Pattern[str]


@cache
def load_gate_config(path: Path = GATE_FILE) -> GateConfig:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return GateConfig(
        source_kinds=frozenset(data["source_kinds"]),
        extra_keys=frozenset(data["extra_keys"]),
        patterns={name: re.compile(rx) for name, rx in data["patterns"].items()},
        full_date=re.compile(data["full_date"]),
    )


@dataclass(frozen=True)
class RawDoc:
    patient_key: str | None
    dates: frozenset[str]
    event_time: datetime | None


# Documents the raw index gathers as Python lists before it turns them into Arrow columns.
_INDEX_CHUNK = 65_536
_DOC_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("patient_key", pa.string()),
        ("dates", pa.list_(pa.string())),
        ("event_time", pa.timestamp("us", tz="UTC")),
    ]
)


class RawPatientIndex:
    """What the gate needs from the raw zone: identifiers per patient key, and per document its patient,
    its full-date strings and its event time.  No text is kept.

    The per-document facts are Arrow columns found by doc_id through ``IdLookup`` (about 100 bytes a document),
    not a dict of objects (about 900): a corpus of ten million clinical notes would otherwise hold ~9 GB here.
    """

    def __init__(self) -> None:
        self.identifiers: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._pending: dict[str, list[Any]] = {name: [] for name in _DOC_SCHEMA.names}
        self._chunks: list[pa.Table] = []
        self._docs: pa.Table | None = None
        self._lookup: IdLookup | None = None

    def add(self, row: dict[str, Any], full_date: re.Pattern[str]) -> None:
        key = row.get("patient_key")
        if key:
            for kind, value in identifiers(row):
                if searchable(value):
                    self.identifiers[key][kind].add(value)
        metadata = row.get("metadata") or {}
        self._pending["doc_id"].append(row["doc_id"])
        self._pending["patient_key"].append(key)
        self._pending["dates"].append(sorted(set(_matches(full_date, row.get("text") or ""))))
        self._pending["event_time"].append(metadata.get("event_time"))
        if len(self._pending["doc_id"]) >= _INDEX_CHUNK:
            self._flush()

    def _flush(self) -> None:
        if self._pending["doc_id"]:
            self._chunks.append(pa.table(self._pending, schema=_DOC_SCHEMA))
            self._pending = {name: [] for name in _DOC_SCHEMA.names}
            self._docs = self._lookup = None

    def docs(self, doc_ids: list[str]) -> list[RawDoc | None]:
        """Each document's raw facts, or None for a document the raw zone has not (in the order asked)."""
        self._flush()
        if self._lookup is None:
            self._docs = pa.concat_tables([_DOC_SCHEMA.empty_table(), *self._chunks]).combine_chunks()
            self._chunks = [self._docs]
            self._lookup = IdLookup(self._docs.column("doc_id").combine_chunks())
        positions = self._lookup.positions(doc_ids)
        found = positions >= 0
        rows = iter(self._docs.take(pa.array(positions[found])).to_pylist())
        return [_raw_doc(next(rows)) if hit else None for hit in found.tolist()]

    @classmethod
    def from_raw_zone(cls, zones: Zones, spec: CorpusSpec, config: GateConfig) -> RawPatientIndex:
        index = cls()
        for source in spec.sources:
            if source.kind not in config.source_kinds:
                continue
            for part in zone_parts(zones.raw / source.name):
                for batch in pq.ParquetFile(part).iter_batches(batch_size=_INDEX_CHUNK, columns=RAW_COLUMNS):
                    for row in batch.to_pylist():
                        index.add(row, config.full_date)
        return index


def _raw_doc(row: dict[str, Any]) -> RawDoc:
    return RawDoc(patient_key=row["patient_key"], dates=frozenset(row["dates"]), event_time=row["event_time"])


def _matches(pattern: re.Pattern[str], text: str) -> list[str]:
    return [m.group(0) for m in pattern.finditer(text)]


def _whole_word(values: set[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=lambda v: (-len(v), v)))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


class ResidualPhiGate(TwoPassStep):
    """Two passes because a patient's date shift is the most common one over all of the patient's documents,
    which a batch may split: ``observe`` counts shifts, ``decide`` picks each patient's, ``apply`` scans."""

    name = "residual_phi_gate"

    def __init__(self, index: RawPatientIndex, config: GateConfig) -> None:
        super().__init__()
        self.index = index
        self.config = config
        self._patient_patterns: dict[str, dict[str, re.Pattern[str]]] = {}
        self._shifts_seen: dict[str, Counter[int]] = defaultdict(Counter)
        self.offsets: dict[str, int] = {}

    def _patterns_of(self, patient_key: str) -> dict[str, re.Pattern[str]]:
        """The patient's identifier patterns, compiled once; the cache keeps the most recent patients only."""
        patterns = self._patient_patterns.pop(patient_key, None)
        if patterns is None:
            found = self.index.identifiers.get(patient_key, {})
            patterns = {kind: _whole_word(values) for kind, values in found.items()}
            if len(self._patient_patterns) >= PATTERN_CACHE:
                del self._patient_patterns[next(iter(self._patient_patterns))]
        self._patient_patterns[patient_key] = patterns  # most recently used last
        return patterns

    def observe(self, docs: list[Doc]) -> None:
        """Count each patient's date shifts in days, raw vs de-identified event time (only ``doc_id`` and
        ``metadata`` are read: observing needs no text)."""
        for doc, raw in zip(docs, self.index.docs([d["doc_id"] for d in docs]), strict=True):
            shifted = (doc.get("metadata") or {}).get("event_time")
            if raw and raw.patient_key and raw.event_time and shifted:
                self._shifts_seen[raw.patient_key][(raw.event_time.date() - shifted.date()).days] += 1

    def _decide(self, skip: pa.Array) -> None:
        self.offsets = {key: counts.most_common(1)[0][0] for key, counts in self._shifts_seen.items()}
        self._shifts_seen.clear()

    def scan(self, doc: Doc, raw: RawDoc | None, offsets: dict[str, int]) -> Counter[str]:
        """Hit counts by kind in one de-identified document (its text and its structured payloads); ``raw`` is
        its raw zone facts."""
        extra = dict((doc.get("metadata") or {}).get("extra") or [])
        payloads = [extra[key] for key in sorted(self.config.extra_keys) if extra.get(key)]
        text = "\n".join([doc["text"] or "", *payloads])
        hits: Counter[str] = Counter()
        for kind, pattern in self.config.patterns.items():
            hits[kind] += sum(1 for _ in pattern.finditer(text))
        if raw is not None and raw.patient_key:
            for kind, pattern in self._patterns_of(raw.patient_key).items():
                hits[kind] += sum(1 for _ in pattern.finditer(text))
            hits["unshifted_date"] += len(self._unshifted_dates(text, raw, offsets.get(raw.patient_key)))
        return +hits

    def _unshifted_dates(self, text: str, raw: RawDoc, offset: int | None) -> set[str]:
        verbatim = set(_matches(self.config.full_date, text)) & raw.dates
        if offset:
            verbatim -= {shift_date_text(d, -offset) for d in raw.dates}
        return verbatim

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        kept = []
        # The raw facts of the scanned documents, looked up as one batch, in the order the loop meets them.
        raws = iter(self.index.docs([d["doc_id"] for d in docs if d["source_kind"] in self.config.source_kinds]))
        for doc in docs:
            if doc["source_kind"] not in self.config.source_kinds:
                kept.append(doc)
                continue
            self.facts["documents_scanned"] += 1
            hits = self.scan(doc, next(raws), self.offsets)
            if not hits:
                kept.append(doc)
                continue
            self.facts.update({f"hits:{kind}": n for kind, n in hits.items()})
            first = min(hits, key=lambda kind: KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER))
            self.facts[f"blocked:{first}"] += 1
            detail = "hits " + ", ".join(f"{kind}={n}" for kind, n in sorted(hits.items()))
            ledger.drop(doc, self.name, f"residual_phi:{first}", detail)
        return kept

    def summary(self) -> dict[str, Any]:
        blocked, hits = self._by_kind("blocked:"), self._by_kind("hits:")
        return {
            "documents_scanned": self.facts["documents_scanned"],
            "documents_blocked": sum(blocked.values()),
            "blocked_by_kind": blocked,
            "hits_by_kind": hits,
        }

    def _by_kind(self, prefix: str) -> dict[str, int]:
        return {fact.removeprefix(prefix): n for fact, n in sorted(self.facts.items()) if fact.startswith(prefix)}

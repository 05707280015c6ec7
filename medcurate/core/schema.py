"""The document record: the one Arrow schema every stage reads and writes.

Every ingest parser produces rows of this shape and every later stage keeps it, so a row can always be
traced back to the byte range of the file it came from.  Two variants exist because of one column:

* ``RAW_DOCUMENT_SCHEMA`` (raw zone, contains PHI) carries ``patient_key``: the identifier exactly as the
  source system wrote it (MRN, FHIR Patient id, HL7 PID-3, DICOM PatientID).
* ``DEID_DOCUMENT_SCHEMA`` (de-identified zone and after) carries ``patient_pseudonym`` instead: a keyed
  HMAC of ``patient_key``.  The raw key never leaves the raw zone.

Metadata is a typed struct rather than a JSON blob so that Parquet statistics, Great Expectations and SQL
(DuckDB) can use it.  Fields that only one kind uses stay null elsewhere; anything without a typed home goes
in ``extra`` as strings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from medcurate.core.names import LEGAL_BASES  # noqa: F401  (stages import it with the record schema)

METADATA_TYPE = pa.struct(
    [
        pa.field("title", pa.string()),
        pa.field("language", pa.string()),
        # When the documented event happened (note charttime, study date, publication date).  A date is PHI
        # for clinical records: de-identification shifts it per patient.
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("encounter_id", pa.string()),
        pa.field("note_type", pa.string()),
        pa.field("section_labels", pa.list_(pa.string())),
        pa.field("mesh_terms", pa.list_(pa.string())),
        pa.field("publication_types", pa.list_(pa.string())),
        pa.field("pmid", pa.string()),
        pa.field("pmcid", pa.string()),
        pa.field("doi", pa.string()),
        pa.field("modality", pa.string()),
        pa.field("study_uid", pa.string()),
        pa.field("series_uid", pa.string()),
        pa.field("sop_instance_uid", pa.string()),
        # DICOM: pixels may carry burned-in text; such instances are never published as clean.
        pa.field("burned_in_annotation", pa.bool_()),
        pa.field("extra", pa.map_(pa.string(), pa.string())),
    ]
)
METADATA_FIELDS = tuple(f.name for f in METADATA_TYPE)
# Keys in ``metadata.extra`` of the structured payload a record was rendered from (raw zone): the deid stage
# de-identifies the payload field by field and renders the text again from it.
FHIR_JSON_KEY = "fhir_json"
HL7_MESSAGE_KEY = "hl7_message"
CSV_ROW_KEY = "csv_row"
DICOM_JSON_KEY = "dicom_json"

_COMMON_FIELDS = [
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_kind", pa.string(), nullable=False),
    # The input file, by its opaque keyed id (``src-<16 hex>``, medcurate.core.source_files): a path is PHI.
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("source_sha256", pa.string(), nullable=False),
    # Human-readable place in the file ("line 12", "entry 3 Patient/p1", "message 2"), and its 0-based index.
    pa.field("position", pa.string(), nullable=False),
    pa.field("record_index", pa.int64(), nullable=False),
    pa.field("doc_type", pa.string(), nullable=False),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("metadata", METADATA_TYPE),
    pa.field("license", pa.string(), nullable=False),
    pa.field("legal_basis", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
]

RAW_DOCUMENT_SCHEMA = pa.schema(_COMMON_FIELDS + [pa.field("patient_key", pa.string())])
DEID_DOCUMENT_SCHEMA = pa.schema(_COMMON_FIELDS + [pa.field("patient_pseudonym", pa.string())])

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string()),
        pa.field("position", pa.string()),
        pa.field("doc_id", pa.string()),
        # A short machine-readable reason ("malformed_xml", "expect_column_values_to_not_be_null") and a
        # detail sentence.  Neither may contain document text: they end up in logs and reports.
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
    ]
)


def make_doc_id(source: str, natural_key: str) -> str:
    """A stable document id: the same source record gets the same id in every run.

    ``natural_key`` is what identifies the record inside its source (note_id, PMID, SOPInstanceUID, FHIR
    resource id, HL7 message control id), so re-ingesting a corrected file keeps the ids of unchanged records
    and a PubMed update replaces its earlier version instead of duplicating it.
    """
    return hashlib.sha256(f"{source}\x1f{natural_key}".encode()).hexdigest()[:32]


@dataclass
class Document:
    """One raw document as a parser yields it; ``to_row`` turns it into a ``RAW_DOCUMENT_SCHEMA`` row.

    Parsers fill what they know; the ingest stage stamps the provenance fields (source, file id, sha256, licence,
    legal basis, run id) so no parser can get them wrong.
    """

    natural_key: str
    position: str
    record_index: int
    doc_type: str
    text: str
    patient_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    source: str
    source_kind: str
    source_file: str
    source_sha256: str
    license: str
    legal_basis: str
    run_id: str


def normalize_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Map a parser's metadata dict onto ``METADATA_TYPE``: typed fields by name, the rest into ``extra``."""
    out: dict[str, Any] = {name: None for name in METADATA_FIELDS}
    extra: dict[str, str] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        if key in METADATA_FIELDS and key != "extra":
            out[key] = value
        elif key == "extra":
            extra.update({str(k): str(v) for k, v in value.items() if v is not None})
        else:
            extra[key] = str(value)
    event_time = out["event_time"]
    if isinstance(event_time, datetime) and event_time.tzinfo is None:
        out["event_time"] = event_time.replace(tzinfo=UTC)
    out["extra"] = sorted(extra.items()) if extra else None
    return out


def documents_to_table(documents: Iterable[Document], provenance: Provenance) -> pa.Table:
    """Build a raw-zone table from parsed documents, stamping every row with the same provenance."""
    rows = [
        {
            "doc_id": make_doc_id(provenance.source, doc.natural_key),
            "source": provenance.source,
            "source_kind": provenance.source_kind,
            "source_file": provenance.source_file,
            "source_sha256": provenance.source_sha256,
            "position": doc.position,
            "record_index": doc.record_index,
            "doc_type": doc.doc_type,
            "text": doc.text,
            "metadata": normalize_metadata(doc.metadata),
            "license": provenance.license,
            "legal_basis": provenance.legal_basis,
            "run_id": provenance.run_id,
            "patient_key": doc.patient_key,
        }
        for doc in documents
    ]
    return pa.Table.from_pylist(rows, schema=RAW_DOCUMENT_SCHEMA)

"""Structured records in the deid stage: the payload ingest kept is de-identified field by field, and the text
of a rendered record is rendered again from the de-identified payload.

Ingest keeps each record's structured payload in the raw zone's ``metadata.extra`` (``PAYLOAD_KEYS``).  A FHIR
timeline and an HL7 message are renderings of their payload, so their text is not run through the text engine
but rendered again, by the renderer ingest used (``medcurate.formats``), from the payload
``StructuredDeidentifier`` returns: every name, id and date in it is then replaced by exactly the surrogate,
pseudonym and shift the patient's notes get.  For
narrative documents (FHIR DocumentReference / DiagnosticReport, CSV notes) the text still goes through the text
engine and only the payload is de-identified here.

Free-text leaves inside records (narratives, comments, OBX text, codings' display text) need the text engine.
Calling it once per leaf would cost one Ray round-trip each, so the work is done in two passes over a part:
``collect`` walks every payload with a hook that only records the leaves, the stage analyzes them in the same
Ray batch as the documents' own texts, and ``apply`` walks again with the spans found.  Both walks see the same
leaves because the rule table is deterministic.  A leaf is short and lacks the context of a whole note, so
the words of the record's own name fields are also replaced wherever they occur in its leaves (``name_spans``).

A payload that is missing, unreadable, or fails to de-identify or render makes its record fail with a reason
(no value in it); the stage quarantines it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import regex

from medcurate.core.quarantine import Rejected
from medcurate.core.schema import CSV_ROW_KEY, FHIR_JSON_KEY, HL7_MESSAGE_KEY
from medcurate.formats.fhir_timeline import timeline_from_bundle
from medcurate.formats.hl7v2 import MessageRejected, message_document
from pipelines.deid.config import DeidConfig
from pipelines.deid.engine import PhiSpan
from pipelines.deid.structured import StructuredDeidentifier, TextDeid
from pipelines.deid.surrogates import Replacer

# source kind -> the metadata.extra key of its payload
PAYLOAD_KEYS = {"fhir": FHIR_JSON_KEY, "hl7v2": HL7_MESSAGE_KEY, "notes_csv": CSV_ROW_KEY}
# Kinds whose records cannot be de-identified without their payload: every FHIR and HL7 document has one.
PAYLOAD_REQUIRED = frozenset({"fhir", "hl7v2"})
TIMELINE = "patient_timeline"


class PayloadError(Rejected):
    """A record whose payload cannot be used (``detail`` has no value of it)."""


@dataclass
class StructuredResult:
    key: str
    payload: str
    # The text rendered from the de-identified payload; None for a narrative document (the text engine's job).
    text: str | None
    actions: Counter[str] = field(default_factory=Counter)
    # Labels of the PHI spans the text engine found in the payload's free-text leaves.
    phi: Counter[str] = field(default_factory=Counter)
    # Words of the record's name fields (raw; never written anywhere).
    names: set[str] = field(default_factory=set, repr=False)


def renders_text(row: dict[str, Any]) -> bool:
    """Whether the record's text is a rendering of its payload (rendered again after de-identification)."""
    return row["source_kind"] == "hl7v2" or (row["source_kind"] == "fhir" and row["doc_type"] == TIMELINE)


def payload_of(row: dict[str, Any]) -> tuple[str, str] | None:
    key = PAYLOAD_KEYS.get(row["source_kind"])
    value = dict((row["metadata"] or {}).get("extra") or []).get(key) if key else None
    return (key, value) if key and value else None


class StructuredPayloads:
    """The two passes over one part's text-kind rows; ``failures`` holds doc_id -> PayloadError."""

    def __init__(self, key: bytes, config: DeidConfig, replacer: Replacer) -> None:
        self.key = key
        self.config = config
        self.replacer = replacer
        self.failures: dict[str, PayloadError] = {}
        # doc_id -> the words of the record's name fields, found in pass 1 (in memory only)
        self.names: dict[str, set[str]] = {}

    def collect(self, rows: list[dict[str, Any]]) -> list[str]:
        """Pass 1: the distinct free-text leaves of every payload; records that fail go to ``failures``."""
        leaves: dict[str, None] = {}

        def record(text: str, patient: str) -> str:
            leaves[text] = None
            return text

        for row in rows:
            try:
                result = self._deidentify(row, record)
            except PayloadError as exc:
                self.failures[row["doc_id"]] = exc
                continue
            if result is not None:
                self.names[row["doc_id"]] = result.names
        return list(leaves)

    def apply(self, row: dict[str, Any], spans: dict[str, list[PhiSpan]]) -> StructuredResult | None:
        """Pass 2: the record's de-identified payload (and rendered text); None when it has no payload.

        Raises ``PayloadError`` (a row ``collect`` did not flag cannot normally fail here: same walk)."""
        phi: Counter[str] = Counter()
        names = name_pattern(self.names.get(row["doc_id"], set()), self.config)

        def deid_text(text: str, patient: str) -> str:
            found = merge_spans(spans[text], name_spans(text, names))
            phi.update(s.label for s in found)
            return self.replacer.apply(text, found, patient).text

        result = self._deidentify(row, deid_text)
        if result is not None:
            result.phi = phi
        return result

    def _deidentify(self, row: dict[str, Any], text_deid: TextDeid) -> StructuredResult | None:
        kind = row["source_kind"]
        found = payload_of(row)
        if found is None:
            if kind in PAYLOAD_REQUIRED:
                raise PayloadError("missing_structured_payload", f"no {PAYLOAD_KEYS[kind]} in metadata.extra")
            return None
        key, raw = found
        deid = StructuredDeidentifier(self.key, self.config, text_deid=text_deid, replacer=self.replacer)
        try:
            if kind == "hl7v2":
                payload, text = self._hl7(deid, raw)
            elif kind == "fhir":
                payload, text = self._fhir(deid, raw, row)
            else:
                payload, text = self._csv(deid, raw), None
        except PayloadError:
            raise
        except Exception as exc:  # any failure holds the record back; the class name carries no value
            raise PayloadError("structured_deid_failed", f"{key}: {type(exc).__name__}") from None
        return StructuredResult(key, payload, text, Counter(deid.counts), names=deid.names_seen)

    def _fhir(self, deid: StructuredDeidentifier, raw: str, row: dict[str, Any]) -> tuple[str, str | None]:
        resource = _json_object(raw, FHIR_JSON_KEY)
        if not isinstance(resource.get("resourceType"), str):
            raise PayloadError("malformed_structured_payload", f"{FHIR_JSON_KEY}: not a FHIR resource")
        out = deid.fhir(resource, patient_key=row["patient_key"] or "")
        text = timeline_from_bundle(out).text if renders_text(row) else None
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False), text

    def _hl7(self, deid: StructuredDeidentifier, raw: str) -> tuple[str, str]:
        message = deid.hl7(raw)
        try:
            document = message_document(1, [s for s in re.split(r"\r\n|\r|\n", message) if s])
        except MessageRejected as exc:
            raise PayloadError("structured_render_failed", f"{HL7_MESSAGE_KEY}: {exc.reason}") from None
        return message, document.text

    def _csv(self, deid: StructuredDeidentifier, raw: str) -> str:
        row = _json_object(raw, CSV_ROW_KEY)
        cells = {str(k): "" if v is None else str(v) for k, v in row.items()}
        [out] = deid.csv_rows([cells], deid.rules.notes_csv_profile)
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def name_pattern(words: set[str], config: DeidConfig) -> regex.Pattern[str] | None:
    """Whole-word matcher of a record's name words: any case, except names that are also ordinary words
    ("Will", "Hope", "Brown"), which must be written capitalised or in capitals."""
    rules = config.names
    usable = {w for w in words if len(w) >= 2 and w.lower() not in rules.stop_words | rules.never_names}
    if not usable:
        return None
    plain = sorted((w for w in usable if w.lower() not in rules.ambiguous_names), key=len, reverse=True)
    cased = sorted(
        {v for w in usable if w.lower() in rules.ambiguous_names for v in (w.capitalize(), w.upper())},
        key=len,
        reverse=True,
    )
    alternatives = [f"(?i:{'|'.join(map(regex.escape, plain))})"] if plain else []
    alternatives += [regex.escape(w) for w in cased]
    return regex.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)")


def name_spans(text: str, pattern: regex.Pattern[str] | None) -> list[PhiSpan]:
    if pattern is None:
        return []
    return [PhiSpan(m.start(), m.end(), "NAME", 1.0) for m in pattern.finditer(text)]


def merge_spans(found: list[PhiSpan], extra: list[PhiSpan]) -> list[PhiSpan]:
    """The engine's spans plus the extra ones that overlap none of them."""
    kept = [e for e in extra if not any(e.start < s.end and s.start < e.end for s in found)]
    return sorted([*found, *kept])


def _json_object(raw: str, key: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise PayloadError("malformed_structured_payload", f"{key}: not JSON") from None
    if not isinstance(value, dict):
        raise PayloadError("malformed_structured_payload", f"{key}: not a JSON object")
    return value

"""The deid stage's DICOM handler: each record's stored header goes through the Annex E de-identifier.

The text is rendered again from the de-identified header; UIDs in the typed metadata are remapped the way the
header's are, the event time moves by the patient's date offset.  A record without a header, whose header
cannot be de-identified, or whose pixels may carry burned-in text is quarantined.
"""

from __future__ import annotations

from collections import Counter

from medcurate.core.schema import DICOM_JSON_KEY
from pipelines.deid.config import DeidConfig
from pipelines.deid.dicom import DicomDeidentifier
from pipelines.deid.dicom_uids import remap_uid
from pipelines.deid.ledger import DeidLedger
from pipelines.deid.surrogates import Replacer

DICOM_UID_FIELDS = ("study_uid", "series_uid", "sop_instance_uid")
BURNED_IN = "possible_burned_in_text"


class DicomHandler:
    def __init__(self, secret_key: bytes, config: DeidConfig, replacer: Replacer, ledger: DeidLedger) -> None:
        self.secret_key = secret_key
        self.config = config
        self.replacer = replacer
        self.ledger = ledger
        self.actions: Counter[str] = Counter()
        self._deidentifier: DicomDeidentifier | None = None

    def handle(self, row: dict) -> dict | None:
        """The de-identified row, or None when the record was quarantined."""
        if self._deidentifier is None:
            self._deidentifier = DicomDeidentifier(self.secret_key)
        metadata = dict(row["metadata"] or {})
        extra = dict(metadata.get("extra") or [])
        header = extra.get(DICOM_JSON_KEY)
        if not header:
            self.ledger.quarantine_row(row, "missing_dicom_header", "no DICOM JSON header in metadata.extra")
            return None
        try:
            result = self._deidentifier.deidentify_json(header)
        except Exception as exc:  # a malformed header must not stop the stage; the record is held back
            self.ledger.quarantine_row(row, "dicom_deid_failed", f"DICOM de-identification raised {type(exc).__name__}")
            return None
        self.actions.update(result.actions)
        if not result.publishable:
            self.ledger.quarantine_row(row, result.reason or BURNED_IN, "pixel data may contain burned-in text")
            return None
        changed = {f"DICOM_{action}": (n, f"annex_e_{action}") for action, n in result.actions.items() if action != "K"}
        self.ledger.record_events(row, changed)
        patient = row["patient_key"] or ""
        if metadata.get("event_time") is not None:
            metadata["event_time"] = self.replacer.shift_datetime(metadata["event_time"], patient)
        for field in DICOM_UID_FIELDS:
            if metadata.get(field):
                metadata[field] = remap_uid(self.secret_key, metadata[field])
        extra[DICOM_JSON_KEY] = result.dicom_json
        metadata["extra"] = sorted(
            (k, v) for k, v in extra.items() if k == DICOM_JSON_KEY or k in self.config.extra_keep_keys
        )
        self.ledger.phi_by_source[row["source"]]["DICOM_ELEMENTS"] += sum(
            n for action, n in result.actions.items() if action != "K"
        )
        return self.ledger.finish(row, result.text, metadata)

"""FHIR R4: Bundles (``.json``) and Bulk Data ``$export`` NDJSON (``.ndjson``, one resource per line).

Two kinds of document come out of a FHIR source:

* narrative documents, yielded as soon as they are read: a ``DocumentReference`` with base64 text
  attachments (doc_type ``clinical_note``) and a ``DiagnosticReport`` with a base64 ``presentedForm`` and/or
  a ``conclusion`` (``lab_report`` for the LAB category, ``diagnostic_report`` otherwise).  Natural key
  "<ResourceType>/<id>".
* one ``patient_timeline`` per patient, built in ``finalize``: the structured resources (Encounter,
  Condition, Observation, MedicationRequest, Procedure, Immunization, AllergyIntolerance, CarePlan, CareTeam,
  Goal, Device, ImagingStudy, MedicationAdministration, SupplyDelivery, and a line per report and document)
  rendered one per line and sorted by date, under the Patient's demographics.  A bulk export spreads one
  patient over many files, so the timeline can only be written once every file has been read.  Natural key
  "timeline/<Patient id>"; it is attributed to the file holding the Patient resource.

Every document keeps the structured payload it was rendered from in ``metadata.extra["fhir_json"]``: the
resource of a narrative document, a collection Bundle (Patient first, then the events in the order they
arrived) for a timeline; base64 attachment bytes are left out.  The raw zone is owner-only; the deid stage
de-identifies the payload field by field and renders the timeline text again from the de-identified Bundle
(``medcurate.formats.fhir_timeline.timeline_from_bundle``), so nothing of the payload goes further un-de-identified.

patient_key is the Patient resource id, because that is what every reference carries and what a bulk export
can resolve without first reading Patient.ndjson; the MRN stays in the timeline text.  A resource whose
subject (or patient) is not a resolvable Patient reference is rejected (``no_patient_reference``).
Referenced context (Organization, Practitioner, Location...) and billing (Claim, ExplanationOfBenefit) are read
and counted as ``Skipped`` under the reason ``fhir_resources.yaml`` gives their type; any other type is
rejected as ``unsupported_resource_type``.  References are
resolved from "Patient/123", absolute URLs and "urn:uuid:..." (through the Bundle's fullUrl, else the uuid
itself, which is how Synthea assigns ids).

What a file contributes to timelines is kept apart until the file has been read to the end: a file that
turns out to be unusable (``BadInput``) adds nothing.  Positions are 1-based ("entry 3", "line 12").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medcurate.core.schema import FHIR_JSON_KEY, Document
from medcurate.formats.fhir_timeline import (
    TIMELINE_RESOURCES,
    AttachmentError,
    attachment_text,
    concept,
    first_present,
    parse_fhir_datetime,
    render_timeline,
    timeline_bundle,
    without_attachment_data,
)
from pipelines.ingest.base import BadInput, ParsedItem, Parser, RejectedRecord, Skipped
from pipelines.ingest.files import bounded_lines, open_text, read_text
from pipelines.ingest.limits import RECORD_TOO_LARGE, TOO_DEEP, TooDeep, load_json

# Resource type -> why it is read but not rendered (referenced context, billing...): the policy file.
NOT_RENDERED: dict[str, str] = yaml.safe_load(Path(__file__).with_name("fhir_resources.yaml").read_text("utf-8"))

# Resolves a Reference element to (resource type or None, id); None when it cannot be resolved.
Resolver = Callable[[Any], "tuple[str | None, str] | None"]


@dataclass(frozen=True)
class _Place:
    path: Path
    position: str
    record_index: int


@dataclass
class _Event:
    resource: dict[str, Any]
    # Order of arrival: it breaks ties between same-time events of the same type.
    seq: int


@dataclass
class _Contribution:
    """What one file adds to the patient timelines; merged only when the file was read without BadInput."""

    # patient id -> its Patient resource (attachments stripped) and where it was read
    patients: dict[str, tuple[dict[str, Any], _Place]] = field(default_factory=dict)
    # patient id -> resource key ("Observation/o1"; file and index for a resource without id) -> event
    events: dict[str, dict[str, _Event]] = field(default_factory=dict)
    first_place: dict[str, _Place] = field(default_factory=dict)


def _reference_target(ref: str, full_urls: dict[str, tuple[str, str]]) -> tuple[str | None, str] | None:
    if ref in full_urls:
        return full_urls[ref]
    if ref.startswith("urn:uuid:"):
        return None, ref.removeprefix("urn:uuid:")
    parts = [p for p in ref.split("?")[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return None


def _make_resolver(full_urls: dict[str, tuple[str, str]]) -> Resolver:
    def resolve(reference: Any) -> tuple[str | None, str] | None:
        if not isinstance(reference, dict) or not isinstance(reference.get("reference"), str):
            return None
        return _reference_target(reference["reference"], full_urls)

    return resolve


def _patient_id(reference: Any, resolve: Resolver) -> str | None:
    target = resolve(reference)
    if target is None or target[0] not in (None, "Patient"):
        return None
    return target[1]


def _referenced_id(reference: Any, resolve: Resolver) -> str | None:
    target = resolve(reference)
    return target[1] if target else None


def _payload(resource: dict[str, Any]) -> str:
    return json.dumps(resource, separators=(",", ":"), ensure_ascii=False)


def _is_ndjson(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".ndjson") or name.endswith(".ndjson.gz")


class FhirParser(Parser):
    kind = "fhir"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._patients: dict[str, tuple[dict[str, Any], _Place]] = {}
        self._events: dict[str, dict[str, _Event]] = {}
        self._first_place: dict[str, _Place] = {}
        self._seq = 0

    # -- files ---------------------------------------------------------------------------------------------

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        contribution = _Contribution()
        if _is_ndjson(path):
            yield from self._parse_ndjson(path, contribution)
        else:
            yield from self._parse_json(path, contribution)
        self._merge(contribution)

    def _parse_ndjson(self, path: Path, contribution: _Contribution) -> Iterator[ParsedItem]:
        resolve = _make_resolver({})
        record_index = 0
        with open_text(path, self.limits) as f:
            for line_no, line in bounded_lines(f, self.limits.max_record_bytes):
                if line is not None and not line.strip():
                    continue
                place = _Place(path, f"line {line_no}", record_index)
                record_index += 1
                if line is None:
                    yield RejectedRecord(place.position, place.record_index, RECORD_TOO_LARGE, "line over the cap")
                    continue
                try:
                    resource = load_json(line, self.limits.max_depth)
                except json.JSONDecodeError:
                    yield RejectedRecord(place.position, place.record_index, "malformed_json", "line is not JSON")
                    continue
                except TooDeep:
                    yield RejectedRecord(place.position, place.record_index, TOO_DEEP, "line nested over the cap")
                    continue
                yield from self._resource(resource, place, resolve, contribution, fallback_id=None)

    def _parse_json(self, path: Path, contribution: _Contribution) -> Iterator[ParsedItem]:
        try:
            data = load_json(read_text(path, self.limits), self.limits.max_depth)
        except json.JSONDecodeError as exc:
            raise BadInput("malformed_json", f"invalid JSON at line {exc.lineno} column {exc.colno}") from None
        except TooDeep as exc:
            raise BadInput(TOO_DEEP, str(exc)) from None
        if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
            raise BadInput("not_fhir", "the JSON document is not a FHIR resource (no resourceType)")
        if data["resourceType"] != "Bundle":
            yield from self._resource(data, _Place(path, "entry 1", 0), _make_resolver({}), contribution, None)
            return
        entries = [e for e in data.get("entry") or [] if isinstance(e, dict)]
        full_urls = {}
        for entry in entries:
            resource = entry.get("resource")
            if isinstance(entry.get("fullUrl"), str) and isinstance(resource, dict) and resource.get("id"):
                full_urls[entry["fullUrl"]] = (resource.get("resourceType"), str(resource["id"]))
        resolve = _make_resolver(full_urls)
        for i, entry in enumerate(entries):
            place = _Place(path, f"entry {i + 1}", i)
            resource = entry.get("resource")
            full_url = entry.get("fullUrl")
            fallback = full_url.removeprefix("urn:uuid:") if isinstance(full_url, str) else None
            yield from self._resource(resource, place, resolve, contribution, fallback_id=fallback)

    # -- resources -----------------------------------------------------------------------------------------

    def _resource(
        self,
        resource: Any,
        place: _Place,
        resolve: Resolver,
        contribution: _Contribution,
        fallback_id: str | None,
    ) -> Iterator[ParsedItem]:
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield RejectedRecord(place.position, place.record_index, "not_a_resource", "no resourceType")
            return
        rtype = resource["resourceType"]
        rid = str(resource.get("id") or fallback_id or "")
        if rtype == "Patient":
            if not rid:
                yield RejectedRecord(place.position, place.record_index, "missing_id", "Patient without id")
                return
            contribution.patients[rid] = (without_attachment_data(resource), place)
            contribution.first_place.setdefault(rid, place)
            return
        if rtype in NOT_RENDERED:
            yield Skipped(NOT_RENDERED[rtype])
            return
        if rtype not in TIMELINE_RESOURCES:
            # The type name goes into the quarantine index: only when it looks like one, never free text.
            shown = rtype if rtype.isalnum() and len(rtype) <= 40 else "not recognised"
            yield RejectedRecord(
                place.position, place.record_index, "unsupported_resource_type", f"resourceType {shown}"
            )
            return
        pid = _patient_id(resource.get("subject") or resource.get("patient"), resolve)
        if pid is None:
            # Without a patient a record can be neither pseudonymized nor kept to one split per patient.
            yield RejectedRecord(
                place.position, place.record_index, "no_patient_reference", f"{rtype} without a Patient subject"
            )
            return
        if rtype == "DocumentReference":
            yield self._document_reference(resource, rid, pid, place, resolve)
        elif rtype == "DiagnosticReport":
            report = self._diagnostic_report(resource, rid, pid, place, resolve)
            if report is not None:
                yield report
        events = contribution.events.setdefault(pid, {})
        key = f"{rtype}/{rid}" if rid else f"{place.path}#{place.record_index}"
        self._seq += 1
        events[key] = _Event(without_attachment_data(resource), self._seq)
        contribution.first_place.setdefault(pid, place)

    def _texts(self, attachments: list[Any]) -> list[str]:
        return [t.strip() for t in (attachment_text(a) for a in attachments) if t and t.strip()]

    def _document_reference(
        self, r: dict[str, Any], rid: str, pid: str, place: _Place, resolve: Resolver
    ) -> ParsedItem:
        if not rid:
            return RejectedRecord(place.position, place.record_index, "missing_id", "DocumentReference without id")
        attachments = [c.get("attachment") for c in r.get("content") or [] if isinstance(c, dict)]
        try:
            texts = self._texts(attachments)
        except AttachmentError as exc:
            return RejectedRecord(place.position, place.record_index, exc.reason, "DocumentReference attachment")
        if not texts:
            return RejectedRecord(
                place.position, place.record_index, "no_text_attachment", "no inline text/plain attachment"
            )
        type_name = concept(r.get("type"))[0] or None
        encounters = first_present(r, "context.encounter") or []
        title = r.get("description") or next((a.get("title") for a in attachments if a and a.get("title")), None)
        return Document(
            natural_key=f"DocumentReference/{rid}",
            position=place.position,
            record_index=place.record_index,
            doc_type="clinical_note",
            text="\n\n".join(texts),
            patient_key=pid,
            metadata={
                "title": title or type_name,
                "event_time": parse_fhir_datetime(first_present(r, "context.period.start", "date")),
                "encounter_id": _referenced_id(encounters[0], resolve) if encounters else None,
                "note_type": type_name,
                "resource_type": "DocumentReference",
                FHIR_JSON_KEY: _payload(without_attachment_data(r)),
            },
        )

    def _diagnostic_report(
        self, r: dict[str, Any], rid: str, pid: str, place: _Place, resolve: Resolver
    ) -> ParsedItem | None:
        try:
            texts = self._texts(r.get("presentedForm") or [])
        except AttachmentError as exc:
            return RejectedRecord(place.position, place.record_index, exc.reason, "DiagnosticReport presentedForm")
        name = concept(r.get("code"))[0] or None
        conclusion = str(r.get("conclusion") or "").strip()
        if conclusion and not any(conclusion in t for t in texts):
            # Without a presented form the conclusion alone would not say what was examined.
            texts.append(f"Conclusion: {conclusion}" if texts or not name else f"{name}\nConclusion: {conclusion}")
        if not texts:
            return None  # a structured report: its line in the timeline is all there is
        if not rid:
            return RejectedRecord(place.position, place.record_index, "missing_id", "DiagnosticReport without id")
        categories = [c.get("code") for cat in r.get("category") or [] for c in cat.get("coding") or []]
        return Document(
            natural_key=f"DiagnosticReport/{rid}",
            position=place.position,
            record_index=place.record_index,
            doc_type="lab_report" if "LAB" in categories else "diagnostic_report",
            text="\n\n".join(texts),
            patient_key=pid,
            metadata={
                "title": name,
                "event_time": parse_fhir_datetime(
                    first_present(r, "effectiveDateTime", "effectivePeriod.start", "issued")
                ),
                "encounter_id": _referenced_id(r.get("encounter"), resolve),
                "note_type": name,
                "resource_type": "DiagnosticReport",
                FHIR_JSON_KEY: _payload(without_attachment_data(r)),
            },
        )

    # -- timelines -----------------------------------------------------------------------------------------

    def _merge(self, contribution: _Contribution) -> None:
        self._patients.update(contribution.patients)
        for pid, events in contribution.events.items():
            self._events.setdefault(pid, {}).update(events)
        for pid, place in contribution.first_place.items():
            self._first_place.setdefault(pid, place)

    def finalize(self) -> Iterator[tuple[Path, Document]]:
        """One timeline per patient with at least one event (demographics alone are no training text)."""
        for pid in sorted(self._events):
            events = [e.resource for e in sorted(self._events[pid].values(), key=lambda e: e.seq)]
            patient, place = self._patients.get(pid, (None, self._first_place[pid]))
            timeline = render_timeline(patient, events)
            yield (
                place.path,
                Document(
                    natural_key=f"timeline/{pid}",
                    position=place.position,
                    record_index=place.record_index,
                    doc_type="patient_timeline",
                    text=timeline.text,
                    patient_key=pid,
                    metadata={
                        "title": "Patient timeline",
                        "event_time": min(timeline.event_times) if timeline.event_times else None,
                        "event_count": timeline.event_count,
                        FHIR_JSON_KEY: _payload(timeline_bundle(patient, events)),
                    },
                ),
            )

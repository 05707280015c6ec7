"""FHIR R4 resources rendered as readable text lines, the way a clinician would summarise a chart.

Training text must read like text: "2019-03-05 Condition: Type 2 diabetes mellitus active (SNOMED 44054006)"
teaches a model more than a JSON dump, and keeping the code next to the name keeps the line checkable against
the terminology.  Only what the resource itself says is rendered; references to other resources are not
followed (their display text is used when present).
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Short names of the code systems the sample and common US exports use; other systems show their URI.
CODE_SYSTEMS = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://hl7.org/fhir/sid/icd-10": "ICD-10",
    "http://hl7.org/fhir/sid/cvx": "CVX",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://unitsofmeasure.org": "UCUM",
}
# HL7 v3 ActCode encounter classes (R4 Encounter.class); Synthea and most servers send the code only.
ENCOUNTER_CLASSES = {
    "AMB": "ambulatory",
    "EMER": "emergency",
    "FLD": "field",
    "HH": "home health",
    "IMP": "inpatient",
    "ACUTE": "inpatient acute",
    "NONAC": "inpatient non-acute",
    "OBSENC": "observation",
    "PRENC": "pre-admission",
    "SS": "short stay",
    "VR": "virtual",
}
# Attachment media types whose bytes are text we can keep as is.
TEXT_MEDIA_TYPES = ("text/plain", "text/markdown", "text/x-markdown")


class AttachmentError(ValueError):
    """An attachment that claims to be text but cannot be decoded; ``reason`` is a short code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def wall_clock(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant ("2019", "2019-03", "2019-03-04", "2019-03-04T10:00:00-05:00") as written.

    The result keeps the writer's offset (or none): ordering a patient's events by their local time keeps
    each line under the date it displays.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1)
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def parse_fhir_datetime(value: Any) -> datetime | None:
    """The same value as an instant in UTC (a value without offset is taken as UTC), for ``event_time``."""
    parsed = wall_clock(value)
    if parsed is None:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def first_present(resource: dict[str, Any], *paths: str) -> Any:
    """The first non-empty value among dotted paths ("effectivePeriod.start")."""
    for path in paths:
        value: Any = resource
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value not in (None, "", [], {}):
            return value
    return None


def coding_label(coding: dict[str, Any]) -> str:
    system = str(coding.get("system") or "")
    code = coding.get("code")
    if not code:
        return ""
    return f"{CODE_SYSTEMS.get(system, system or 'code')} {code}"


def concept(cc: Any) -> tuple[str, str]:
    """(name, code label) of a CodeableConcept: its text or first display, and its first coding's code."""
    if not isinstance(cc, dict):
        return "", ""
    codings = [c for c in cc.get("coding") or [] if isinstance(c, dict)]
    name = cc.get("text") or next((c["display"] for c in codings if c.get("display")), "")
    label = next((coding_label(c) for c in codings if c.get("code")), "")
    return str(name), label


def concept_text(cc: Any) -> str:
    """ "name (SYSTEM code)", or whichever of the two exists."""
    name, label = concept(cc)
    if name and label:
        return f"{name} ({label})"
    return name or label


def quantity(q: Any) -> str:
    if not isinstance(q, dict) or q.get("value") is None:
        return ""
    comparator = q.get("comparator") or ""
    unit = q.get("unit") or q.get("code") or ""
    return f"{comparator}{q['value']} {unit}".strip()


def observation_value(obs: dict[str, Any]) -> str:
    """The value[x] of an Observation or of one of its components."""
    if "valueQuantity" in obs:
        return quantity(obs["valueQuantity"])
    if "valueCodeableConcept" in obs:
        return concept(obs["valueCodeableConcept"])[0] or concept(obs["valueCodeableConcept"])[1]
    for key in ("valueString", "valueInteger", "valueBoolean", "valueDateTime", "valueTime"):
        if key in obs:
            return str(obs[key]).lower() if key == "valueBoolean" else str(obs[key])
    if "valueRange" in obs:
        low, high = quantity(obs["valueRange"].get("low")), quantity(obs["valueRange"].get("high"))
        return f"{low} - {high}"
    return ""


def reference_range(obs: dict[str, Any]) -> str:
    ranges = obs.get("referenceRange") or []
    if not ranges or not isinstance(ranges[0], dict):
        return ""
    rr = ranges[0]
    if rr.get("text"):
        return f"ref {rr['text']}"
    low, high = quantity(rr.get("low")), quantity(rr.get("high"))
    if low and high:
        return f"ref {low} - {high}"
    return f"ref >= {low}" if low else (f"ref <= {high}" if high else "")


def status(resource: dict[str, Any], key: str) -> str:
    """A plain status code, or the code of a CodeableConcept status (Condition.clinicalStatus)."""
    value = resource.get(key)
    if isinstance(value, dict):
        name, label = concept(value)
        return label.split(" ", 1)[-1] if label else name
    return str(value or "")


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def encounter_line(r: dict[str, Any]) -> str:
    cls = r.get("class") if isinstance(r.get("class"), dict) else {}
    cls_label = cls.get("display") or ENCOUNTER_CLASSES.get(cls.get("code", ""), cls.get("code", ""))
    type_name = next((n for n in (concept(t)[0] for t in r.get("type") or []) if n), "")
    kind = f"{cls_label} ({type_name})" if cls_label and type_name else cls_label or type_name
    reasons = ", ".join(n for n in (concept(c)[0] for c in r.get("reasonCode") or []) if n)
    provider = (r.get("serviceProvider") or {}).get("display", "")
    end = first_present(r, "period.end")
    details = [
        f"at {provider}" if provider else "",
        f"reason: {reasons}" if reasons else "",
        f"until {str(end)[:10]}" if end else "",
    ]
    return ", ".join([f"Encounter: {kind}".strip(), *(d for d in details if d)])


def condition_line(r: dict[str, Any]) -> str:
    abated = first_present(r, "abatementDateTime", "abatementPeriod.start")
    name, label = concept(r.get("code"))
    return _join(
        f"Condition: {name or label}",
        status(r, "clinicalStatus"),
        f"(resolved {str(abated)[:10]})" if abated else "",
        f"({label})" if name and label else "",
    )


def observation_line(r: dict[str, Any]) -> str:
    name, label = concept(r.get("code"))
    components = []
    for comp in r.get("component") or []:
        if isinstance(comp, dict):
            components.append(_join(concept(comp.get("code"))[0], observation_value(comp)))
    interpretation = ", ".join(filter(None, (concept(i)[0] or concept(i)[1] for i in r.get("interpretation") or [])))
    rr = reference_range(r)
    value = observation_value(r)
    return _join(
        f"Observation: {name or label}{':' if components and not value else ''}",
        value,
        "; ".join(c for c in components if c),
        f"({rr})" if rr else "",
        f"[{interpretation}]" if interpretation else "",
        f"({label})" if name and label else "",
    )


def medication(r: dict[str, Any]) -> str:
    """medication[x] of a MedicationRequest or MedicationAdministration: the concept, else the reference's display."""
    med = r.get("medicationCodeableConcept")
    return concept_text(med) if med else (r.get("medicationReference") or {}).get("display", "")


def medication_request_line(r: dict[str, Any]) -> str:
    dosage = "; ".join(d.get("text", "") for d in r.get("dosageInstruction") or [] if d.get("text"))
    return _join(f"MedicationRequest: {medication(r)}", status(r, "status"), f"- {dosage}" if dosage else "")


def coded_line(code: str, state: str = "status") -> Callable[[dict[str, Any]], str]:
    """The renderer of a resource that says what (one CodeableConcept, ``code``) and in which ``state``."""

    def line(r: dict[str, Any]) -> str:
        return _join(f"{r['resourceType']}: {concept_text(r.get(code))}", status(r, state))

    return line


def names(concepts: Any) -> str:
    """The distinct names of a list of CodeableConcepts, in order, comma-separated."""
    found = [concept(c)[0] for c in concepts or [] if isinstance(c, dict)]
    return ", ".join(dict.fromkeys(n for n in found if n))


def coding_name(coding: Any) -> str:
    """A bare Coding's display, else its code."""
    return str(coding.get("display") or coding.get("code") or "") if isinstance(coding, dict) else ""


def allergy_line(r: dict[str, Any]) -> str:
    reactions = names(m for x in r.get("reaction") or [] if isinstance(x, dict) for m in x.get("manifestation") or [])
    return _join(
        f"AllergyIntolerance: {concept_text(r.get('code'))}",
        status(r, "clinicalStatus"),
        f"criticality {r['criticality']}" if r.get("criticality") else "",
        f"- reaction: {reactions}" if reactions else "",
    )


def care_plan_line(r: dict[str, Any]) -> str:
    activities = names(first_present(a, "detail.code") for a in r.get("activity") or [] if isinstance(a, dict))
    return _join(
        f"CarePlan: {names(r.get('category')) or 'care plan'}",
        status(r, "status"),
        f"- activities: {activities}" if activities else "",
    )


def care_team_line(r: dict[str, Any]) -> str:
    """Reasons and the members' roles; never the members themselves (their names are context, not rendered)."""
    roles = names(role for p in r.get("participant") or [] if isinstance(p, dict) for role in p.get("role") or [])
    reasons = names(r.get("reasonCode")) or "care team"
    return _join(f"CareTeam: {reasons}", status(r, "status"), f"- roles: {roles}" if roles else "")


def imaging_study_line(r: dict[str, Any]) -> str:
    series = [s for s in r.get("series") or [] if isinstance(s, dict)]
    modalities = ", ".join(dict.fromkeys(m for s in series if (m := coding_name(s.get("modality")))))
    sites = ", ".join(dict.fromkeys(b for s in series if (b := coding_name(s.get("bodySite")))))
    counts = f"{r.get('numberOfSeries', len(series))} series, {r['numberOfInstances']} instances"
    return _join(
        f"ImagingStudy: {names(r.get('procedureCode')) or modalities or 'imaging study'}",
        f"({modalities})" if modalities and names(r.get("procedureCode")) else "",
        f"of {sites}" if sites else "",
        status(r, "status"),
        f"- {counts}" if "numberOfInstances" in r else "",
    )


def medication_administration_line(r: dict[str, Any]) -> str:
    dose = quantity((r.get("dosage") or {}).get("dose"))
    return _join(f"MedicationAdministration: {medication(r)}", status(r, "status"), f"- dose {dose}" if dose else "")


def supply_delivery_line(r: dict[str, Any]) -> str:
    item = r.get("suppliedItem") if isinstance(r.get("suppliedItem"), dict) else {}
    amount = quantity(item.get("quantity"))
    return _join(
        f"SupplyDelivery: {concept_text(item.get('itemCodeableConcept'))}",
        f"x {amount}" if amount else "",
        status(r, "status"),
    )


# resource type -> (how to render it, where its date is)
TIMELINE_RESOURCES = {
    "Encounter": (encounter_line, ("period.start",)),
    "Condition": (condition_line, ("onsetDateTime", "onsetPeriod.start", "recordedDate")),
    "Observation": (observation_line, ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")),
    "MedicationRequest": (medication_request_line, ("authoredOn",)),
    "Procedure": (coded_line("code"), ("performedDateTime", "performedPeriod.start")),
    "Immunization": (coded_line("vaccineCode"), ("occurrenceDateTime", "recorded")),
    "DiagnosticReport": (coded_line("code"), ("effectiveDateTime", "effectivePeriod.start", "issued")),
    "DocumentReference": (coded_line("type", "docStatus"), ("context.period.start", "date")),
    "AllergyIntolerance": (allergy_line, ("onsetDateTime", "onsetPeriod.start", "recordedDate")),
    "CarePlan": (care_plan_line, ("period.start", "created")),
    "CareTeam": (care_team_line, ("period.start",)),
    "Goal": (coded_line("description", "lifecycleStatus"), ("startDate", "statusDate")),
    # A device's record has no date of use: manufacture and expiry dates say nothing about the patient.
    "Device": (coded_line("type"), ()),
    "ImagingStudy": (imaging_study_line, ("started",)),
    "MedicationAdministration": (medication_administration_line, ("effectiveDateTime", "effectivePeriod.start")),
    "SupplyDelivery": (supply_delivery_line, ("occurrenceDateTime", "occurrencePeriod.start")),
}


@dataclass(frozen=True)
class Timeline:
    text: str
    event_times: list[datetime]
    event_count: int


def _chronological(item: tuple[int, dict[str, Any]]) -> tuple[bool, str, int, int]:
    """Dated events by local time as written, then undated ones; same-time events by resource type (the
    encounter first), then in the order they arrived."""
    seq, resource = item
    rtype = resource["resourceType"]
    when = wall_clock(first_present(resource, *TIMELINE_RESOURCES[rtype][1]))
    moment = when.replace(tzinfo=None).isoformat() if when else ""
    return when is None, moment, list(TIMELINE_RESOURCES).index(rtype), seq


def render_timeline(patient: dict[str, Any] | None, events: list[dict[str, Any]]) -> Timeline:
    """A patient's demographics, then one line per event resource in date order.

    ``events`` come in the order they arrived (it breaks ties).  Ingest renders the raw resources; the deid
    stage renders the de-identified ones with this same function, so both texts have the same shape.
    """
    lines = []
    for _, r in sorted(enumerate(events), key=_chronological):
        when = first_present(r, *TIMELINE_RESOURCES[r["resourceType"]][1])
        lines.append(f"{str(when)[:10] if when else 'undated'} {TIMELINE_RESOURCES[r['resourceType']][0](r)}")
    header = patient_header(patient) if patient else []
    times = [parse_fhir_datetime(first_present(r, *TIMELINE_RESOURCES[r["resourceType"]][1])) for r in events]
    return Timeline(
        text="\n".join(header + ([""] if header else []) + lines),
        event_times=[t for t in times if t is not None],
        event_count=len(events),
    )


def timeline_bundle(patient: dict[str, Any] | None, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The structured payload of a timeline: a collection Bundle, the Patient first, events in arrival order."""
    resources = ([patient] if patient else []) + events
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def timeline_from_bundle(bundle: dict[str, Any]) -> Timeline:
    """``render_timeline`` of a ``timeline_bundle`` (raw or de-identified).  Raises ``ValueError`` when the
    Bundle holds anything a timeline cannot be rendered from."""
    resources = [e.get("resource") for e in bundle.get("entry") or [] if isinstance(e, dict)]
    if not resources or not all(isinstance(r, dict) for r in resources):
        raise ValueError("timeline bundle without resources")
    patients = [r for r in resources if r.get("resourceType") == "Patient"]
    events = [r for r in resources if r.get("resourceType") != "Patient"]
    if len(patients) > 1 or any(r.get("resourceType") not in TIMELINE_RESOURCES for r in events):
        raise ValueError("timeline bundle holds resources a timeline does not render")
    return render_timeline(patients[0] if patients else None, events)


def without_attachment_data(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy without base64 attachment bytes: a document's text is the document itself, and a payload need
    not carry it a second time."""
    out = copy.deepcopy(resource)
    for attachment in [c.get("attachment") for c in out.get("content") or [] if isinstance(c, dict)] + list(
        out.get("presentedForm") or []
    ):
        if isinstance(attachment, dict):
            attachment.pop("data", None)
    return out


def patient_header(r: dict[str, Any]) -> list[str]:
    """Demographics lines for the top of a timeline (raw zone: identifiers are kept for de-identification)."""
    lines = []
    names = [n for n in r.get("name") or [] if isinstance(n, dict)]
    name = next((n for n in names if n.get("use") == "official"), names[0] if names else None)
    if name:
        text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
        lines.append(f"Patient: {text}")
    for ident in r.get("identifier") or []:
        codes = [c.get("code") for c in (ident.get("type") or {}).get("coding") or []]
        if "MR" in codes and ident.get("value"):
            lines.append(f"MRN: {ident['value']}")
    if r.get("birthDate"):
        lines.append(f"Birth date: {r['birthDate']}")
    if r.get("gender"):
        lines.append(f"Gender: {r['gender']}")
    if r.get("deceasedDateTime"):
        lines.append(f"Deceased: {str(r['deceasedDateTime'])[:10]}")
    for addr in (r.get("address") or [])[:1]:
        street = ", ".join(addr.get("line") or [])
        region = _join(addr.get("state", ""), addr.get("postalCode", ""))
        parts = [p for p in (street, addr.get("city", ""), region, addr.get("country", "")) if p]
        if parts:
            lines.append(f"Address: {', '.join(parts)}")
    for telecom in r.get("telecom") or []:
        if telecom.get("value") and telecom.get("system") in ("phone", "email"):
            lines.append(f"{telecom['system'].capitalize()}: {telecom['value']}")
    return lines


def attachment_text(attachment: Any) -> str | None:
    """The text of a base64 text attachment; None when it is not text (PDF, image) or holds no data.

    Raises ``AttachmentError`` for a text attachment whose bytes are not valid base64 or not in its charset.
    """
    if not isinstance(attachment, dict) or not attachment.get("data"):
        return None
    media_type, _, params = str(attachment.get("contentType") or "text/plain").partition(";")
    if media_type.strip().lower() not in TEXT_MEDIA_TYPES:
        return None
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        raw = base64.b64decode("".join(str(attachment["data"]).split()), validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError("bad_base64") from None
    try:
        return raw.decode(charset)
    except LookupError:
        raise AttachmentError("unknown_charset") from None
    except UnicodeDecodeError:
        raise AttachmentError("attachment_not_decodable") from None

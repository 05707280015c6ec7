"""Structured de-identification: FHIR resources, HL7 v2 PID/NK1/PV1, CSV columns, by the rule table."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from medcurate.core import address_policy
from medcurate.core.keys import date_shift_days, pseudonym
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, RAW_DOCUMENT_SCHEMA
from medcurate.core.zones import read_zone
from pipelines.deid.config import default_config
from pipelines.deid.dicom_dates import date_offset
from pipelines.deid.engine import DeidEngine, PhiSpan
from pipelines.deid.structured import StructuredDeidentifier, text_deidentifier
from pipelines.deid.structured_docs import renders_text
from pipelines.deid.structured_rules import StructuredRulesError, load_rules
from pipelines.deid.surrogates import Replacer

KEY = b"structured-test-key-0123456789"
TODAY = date(2026, 1, 15)

PATIENT = {
    "resourceType": "Patient",
    "id": "pt-8812",
    "meta": {"source": "#epic-prod-7", "lastUpdated": "2019-07-22T14:30:00Z"},
    "text": {"status": "generated", "div": "<div>Anna Kowalski, MRN 48213377</div>"},
    "extension": [{"url": "http://hl7.org/fhir/us/core/birthsex", "valueCode": "F"}],
    "identifier": [
        {
            "use": "usual",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "http://riverside-general.example.org/mrn",
            "value": "48213377",
            "assigner": {"display": "Riverside General Hospital"},
        },
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
    ],
    "active": True,
    "name": [{"use": "official", "family": "Kowalski", "given": ["Anna", "Maria"], "prefix": ["Mrs."]}],
    "telecom": [
        {"system": "phone", "value": "(555) 123-4567", "use": "home"},
        {"system": "email", "value": "ak@x.org"},
    ],
    "gender": "female",
    "birthDate": "1961-03-04",
    "deceasedDateTime": "2019-08-02T06:10:00-05:00",
    "address": [
        {
            "line": ["42 Maple Street", "Apt 3"],
            "city": "Springfield",
            "district": "Sangamon County",
            "state": "IL",
            "postalCode": "62704",
            "country": "US",
        }
    ],
    "contact": [
        {
            "relationship": [{"coding": [{"code": "N", "display": "Next-of-Kin"}]}],
            "name": {"family": "Kowalski", "given": ["Piotr"]},
            "telecom": [{"system": "phone", "value": "555-987-6543"}],
        }
    ],
    "generalPractitioner": [{"reference": "Practitioner/dr-okafor", "display": "Dr. Chidi Okafor"}],
    "managingOrganization": {"reference": "Organization/riverside", "display": "Riverside General Hospital"},
}
RELATED = {
    "resourceType": "RelatedPerson",
    "id": "rp-1",
    "patient": {"reference": "Patient/pt-8812"},
    "name": [{"text": "Piotr Kowalski"}],
    "telecom": [{"system": "phone", "value": "555-987-6543"}],
    "birthDate": "1930-05-01",
}
PRACTITIONER = {
    "resourceType": "Practitioner",
    "id": "dr-okafor",
    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    "name": [{"family": "Okafor", "given": ["Chidi"], "prefix": ["Dr."], "suffix": ["MD"]}],
    "qualification": [{"identifier": [{"value": "IL-MED-036.112233"}], "code": {"text": "MD"}}],
}
ORGANIZATION = {
    "resourceType": "Organization",
    "id": "riverside",
    "name": "Riverside General Hospital",
    "alias": ["RGH"],
    "telecom": [{"system": "phone", "value": "555-000-1111"}],
    "address": [{"line": ["1 Hospital Way"], "city": "Springfield", "state": "IL", "postalCode": "03601"}],
}
LOCATION = {
    "resourceType": "Location",
    "id": "loc-5n",
    "name": "Riverside 5 North",
    "description": "Fifth floor, Kowalski wing",
    "position": {"longitude": -89.65, "latitude": 39.78},
    "managingOrganization": {"reference": "Organization/riverside"},
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "obs-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic blood pressure"}]},
    "subject": {"reference": "Patient/pt-8812", "display": "Anna Kowalski"},
    "encounter": {"reference": "Encounter/enc-77"},
    "effectiveDateTime": "2019-07-12T08:00:00Z",
    "issued": "2019-07-22T09:15:00.123Z",
    "performer": [{"reference": "Practitioner/dr-okafor"}],
    "valueQuantity": {"value": 168, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
    "note": [{"authorString": "Chidi Okafor", "time": "2019-07-12", "text": "Called Anna at (555) 123-4567."}],
}
PHI_VALUES = [
    "pt-8812", "48213377", "123-45-6789", "Kowalski", "Anna", "Maria", "Piotr", "Okafor", "Chidi", "555",
    "ak@x.org", "1961-03-04", "2019-08-02", "42 Maple", "Springfield", "Sangamon", "62704", "Riverside", "RGH",
    "1234567893", "IL-MED", "riverside", "dr-okafor", "enc-77", "Maple", "1 Hospital Way", "-89.65", "2019-07-22",
    "2019-07-12", "epic-prod", "1930",
]  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> DeidEngine:
    return DeidEngine()


@pytest.fixture
def deid(engine) -> StructuredDeidentifier:
    replacer = Replacer(KEY, default_config())
    return StructuredDeidentifier(KEY, text_deid=text_deidentifier(engine, replacer), today=TODAY)


def bundle(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def test_no_phi_value_survives_a_bundle_of_every_person_and_place_resource(deid):
    out = deid.fhir(bundle(PATIENT, RELATED, PRACTITIONER, ORGANIZATION, LOCATION, OBSERVATION))
    dumped = json.dumps(out)
    leaks = [v for v in PHI_VALUES if v in dumped]
    assert leaks == []
    assert [e["resource"]["resourceType"] for e in out["entry"]] == [
        "Patient", "RelatedPerson", "Practitioner", "Organization", "Location", "Observation",
    ]  # fmt: skip


def test_fhir_clinical_content_and_codes_are_kept(deid):
    obs = deid.fhir(OBSERVATION)
    assert obs["code"] == OBSERVATION["code"] and obs["valueQuantity"] == OBSERVATION["valueQuantity"]
    assert obs["status"] == "final"
    patient = deid.fhir(PATIENT)
    assert patient["gender"] == "female" and patient["active"] is True
    assert patient["name"][0]["prefix"] == ["Mrs."] and patient["contact"][0]["relationship"]
    assert patient["address"] == [{"state": "IL", "postalCode": "627", "country": "US"}]
    assert "telecom" not in patient and "text" not in patient and "meta" not in patient
    assert patient["identifier"][0]["type"] == PATIENT["identifier"][0]["type"]


def test_fhir_ids_and_references_become_the_same_keyed_pseudonyms(deid):
    patient = deid.fhir(PATIENT)
    obs = deid.fhir(OBSERVATION)
    assert patient["id"] == pseudonym(KEY, "pt-8812")  # the document's patient_pseudonym
    assert obs["subject"] == {"reference": f"Patient/{patient['id']}"}  # display dropped
    # The MRN is HL7's and the CSV exports' patient key: it reads as those records' patient pseudonym.
    assert patient["identifier"][0]["value"] == pseudonym(KEY, "48213377")
    assert patient["identifier"][1]["value"] == pseudonym(KEY, "123-45-6789", "identifier")
    assert patient["generalPractitioner"][0]["reference"] == f"Practitioner/{deid.fhir(PRACTITIONER)['id']}"
    linked = deid.fhir(bundle(PATIENT, OBSERVATION))
    assert linked["entry"][0]["fullUrl"] != "urn:uuid:pt-8812"
    assert linked["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{patient['id']}"


def test_fhir_dates_shift_by_the_patients_offset_and_keep_intervals(deid):
    days = date_shift_days(KEY, "pt-8812", default_config().date_shift_max_days)
    obs = deid.fhir(OBSERVATION)
    patient = deid.fhir(PATIENT)
    assert days == Replacer(KEY, default_config()).date_offset_days("pt-8812")
    assert date_offset(KEY, "pt-8812", default_config().date_shift_max_days).days == -days - 1  # DICOM: + seconds
    effective = date.fromisoformat(obs["effectiveDateTime"][:10])
    issued = date.fromisoformat(obs["issued"][:10])
    assert (date(2019, 7, 12) - effective).days == days
    assert (issued - effective).days == 10 and obs["issued"].endswith("T09:15:00.123Z")
    assert (date.fromisoformat(patient["deceasedDateTime"][:10]) - effective).days == 21


def test_birth_dates_of_people_90_and_over_collapse_to_one_year(deid):
    related = deid.fhir(RELATED)  # born 1930: 95 in 2026
    assert related["birthDate"] == "1936"
    patient = deid.fhir(PATIENT)
    assert patient["birthDate"] != "1961-03-04" and patient["birthDate"].startswith(("1960", "1961"))


def test_restricted_zip3_and_foreign_postcodes(deid):
    org = deid.fhir(ORGANIZATION)
    assert org["address"][0]["postalCode"] == "000"  # 036xx: fewer than 20,000 people
    assert org["name"] == "[HOSPITAL]"
    foreign = deid.fhir({"resourceType": "Patient", "address": [{"postalCode": "SW1A 2AA", "country": "UK"}]})
    assert foreign["address"] == [{"country": "UK"}]


def test_name_surrogates_match_the_text_engines_for_the_same_patient(deid):
    replacer = Replacer(KEY, default_config())
    note = "Anna Kowalski seen."
    in_text = replacer.apply(note, [PhiSpan(0, 13, "NAME")], "pt-8812").text
    name = deid.fhir(PATIENT)["name"][0]
    assert in_text.startswith(f"{name['given'][0]} {name['family']}")
    assert deid.fhir(RELATED)["name"][0]["text"].endswith(name["family"])  # same family, same patient


def test_free_text_fields_go_through_the_text_engine_or_are_removed(deid):
    note = deid.fhir(OBSERVATION)["note"][0]
    assert "(555)" not in note["text"] and note["text"].startswith("Called ")
    without_engine = StructuredDeidentifier(KEY, today=TODAY).fhir(OBSERVATION)
    assert "note" not in without_engine or "text" not in without_engine["note"][0]
    assert without_engine["code"]["coding"][0].get("display") is None  # text fields need the engine


def segment(name: str, fields: dict[int, str]) -> str:
    """An HL7 segment from its fields by number (PV1-19 is ``{19: ...}``)."""
    return "|".join([name] + [fields.get(n, "") for n in range(1, max(fields) + 1)])


HL7 = "\r".join(
    [
        "MSH|^~\\&|EPIC|RIVERSIDE|LAB|RIVERSIDE|20190722143000||ADT^A01|MSG00001|P|2.5.1",
        "EVN|A01|20190722143000",
        segment("PID", {1: "1", 3: "48213377^^^RGH^MR~123456789^^^SSA^SS", 5: "KOWALSKI^ANNA^M^^MRS", 7: "19610304",
                        8: "F", 10: "2106-3", 11: "42 MAPLE ST^APT 3^SPRINGFIELD^IL^62704^USA", 13: "(555)123-4567",
                        14: "(555)765-4321", 18: "ACCT99812", 19: "123-45-6789"}),
        segment("NK1", {1: "1", 2: "KOWALSKI^PIOTR", 3: "SPO^Spouse", 4: "42 MAPLE ST^^SPRINGFIELD^IL^62704^USA",
                        5: "(555)987-6543"}),
        segment("PV1", {1: "1", 2: "I", 3: "5N^512^B^RIVERSIDE", 7: "1234567893^OKAFOR^CHIDI^^^DR^MD", 10: "MED",
                        19: "V778812", 44: "20190722143000", 45: "20190802090000"}),
        "OBX|1|TX|NOTE^Note||Spouse Piotr called from (555) 987-6543.||||||F",
        "OBX|2|NM|8480-6^SBP^LN||168|mm[Hg]|||||F|||20190722150000",
    ]
)  # fmt: skip


def test_hl7_pid_nk1_pv1_are_deidentified_field_by_field(deid):
    out = deid.hl7(HL7)
    for value in ("48213377", "123456789", "KOWALSKI", "ANNA", "PIOTR", "OKAFOR", "CHIDI", "MAPLE", "SPRINGFIELD",
                  "62704", "555", "ACCT99812", "123-45-6789", "RIVERSIDE^", "512", "V778812", "1234567893",
                  "20190722", "19610304", "Piotr"):  # fmt: skip
        assert value not in out, value
    segments = {s.split("|")[0]: s.split("|") for s in out.strip("\r").split("\r")}
    pid = segments["PID"]
    assert pid[3].split("~")[0] == f"{pseudonym(KEY, '48213377')}^^^^MR"  # CX.1 keyed as the patient
    assert pid[8] == "F" and pid[10] == "2106-3"
    assert pid[11] == "^^^IL^627^USA"
    assert segments["PV1"][3] == "5N" and segments["PV1"][7].endswith("^^^DR^MD")
    assert segments["OBX"][5] == "168"  # the second OBX (numeric value) is kept; keys are segment names
    assert "8480-6^SBP^LN" in out and "ADT^A01" in out


def test_hl7_segments_the_policy_does_not_know_are_dropped_whole(deid):
    message = HL7 + "\rGT1|1||KOWALSKI^ANNA||42 MAPLE ST^^SPRINGFIELD^IL^62704|(555)123-4567\rZPI|1|ANNA-PRIVATE-99"
    out = deid.hl7(message)
    names = [s.split("|")[0] for s in out.strip("\r").split("\r")]
    assert "GT1" not in names and "ZPI" not in names and "PID" in names and "OBX" in names
    assert "ANNA" not in out and "MAPLE" not in out
    assert deid.counts["hl7v2:GT1:segment_dropped"] == 1 and deid.counts["hl7v2:ZPI:segment_dropped"] == 1


def test_hl7_dates_keep_their_intervals(deid):
    pv1 = next(s for s in deid.hl7(HL7).split("\r") if s.startswith("PV1")).split("|")
    admit, discharge = pv1[44], pv1[45]
    assert (date.fromisoformat(f"{discharge[:4]}-{discharge[4:6]}-{discharge[6:8]}")
            - date.fromisoformat(f"{admit[:4]}-{admit[4:6]}-{admit[6:8]}")).days == 11  # fmt: skip
    assert admit.endswith("143000") and discharge.endswith("090000")


def test_csv_columns_by_profile(deid):
    rows = [
        {"note_id": "10001-DS-1", "subject_id": "10001", "hadm_id": "20001", "note_type": "DS", "note_seq": "1",
         "charttime": "2180-07-23 14:00:00", "storetime": "2180-07-24 09:00:00", "text": "Seen by Dr. Okafor.",
         "secret_column": "Kowalski"},
    ]  # fmt: skip
    out = list(deid.csv_rows(rows, "mimic_notes"))[0]
    assert out["subject_id"] == pseudonym(KEY, "10001")
    assert out["hadm_id"] == pseudonym(KEY, "20001", "encounter")
    assert out["note_type"] == "DS" and "secret_column" not in out
    assert "Okafor" not in out["text"] and out["text"].startswith("Seen by Dr. ")
    days = date_shift_days(KEY, "10001", default_config().date_shift_max_days)
    assert (date(2180, 7, 23) - date.fromisoformat(out["charttime"][:10])).days == days
    assert out["charttime"].endswith("14:00:00")
    assert deid.counts["csv:mimic_notes.(unlisted):drop"] == 1
    assert deid.counts["csv:mimic_notes.charttime:shift"] == 1


def test_patients_csv_profile_caps_zip_and_drops_contact(deid):
    row = {"subject_id": "7", "first_name": "Anna", "last_name": "Kowalski", "dob": "1920-01-01", "zip": "69201",
           "phone": "555-123-4567", "state": "NE", "gender": "F"}  # fmt: skip
    out = list(deid.csv_rows([row], "patients"))[0]
    assert out["zip"] == "000" and out["dob"] == "1936" and "phone" not in out
    assert out["first_name"] != "Anna" and out["state"] == "NE"


def test_rule_table_rejects_unknown_actions(tmp_path):
    bad = tmp_path / "rules.yaml"
    text = (load_rules.__globals__["DEFAULT_RULES"]).read_text().replace("action: drop}", "action: delete}", 1)
    bad.write_text(text)
    with pytest.raises(StructuredRulesError, match="delete"):
        load_rules(bad)


# ---- the deid stage on the sample corpus: structured records next to the notes of the same people ----

# Dates the renderers write: timeline lines, HL7 result headings "(2021-04-07 06:06)", MDM "Date: ...".
STRUCTURED_DATE = re.compile(r"(?:^|^Date: |\()(\d{4}-\d{2}-\d{2})[ )]", re.MULTILINE)


@dataclass(frozen=True)
class SamplePatient:
    key: str
    raw: list[dict]
    deid: dict[str, dict]  # doc_id -> de-identified row


def _header(text: str, label: str) -> str:
    return next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith(f"{label}: "))


def _extra(row: dict) -> dict[str, str]:
    return dict((row["metadata"] or {}).get("extra") or [])


@pytest.fixture(scope="module")
def sample_patients(sample_run) -> list[SamplePatient]:
    """Patients of the sample with a FHIR timeline, an HL7 message and a CSV note (raw and de-identified)."""
    raw = read_zone(sample_run.zones.raw, RAW_DOCUMENT_SCHEMA).to_pylist()
    deid = {r["doc_id"]: r for r in read_zone(sample_run.zones.deid, DEID_DOCUMENT_SCHEMA).to_pylist()}
    by_key: dict[str, list[dict]] = {}
    for row in raw:
        if row["patient_key"] and row["source_kind"] in ("fhir", "hl7v2", "notes_csv"):
            by_key.setdefault(row["patient_key"], []).append(row)
    found = []
    for key, rows in sorted(by_key.items()):
        kinds = {(r["source_kind"], r["doc_type"]) for r in rows}
        if ("fhir", "patient_timeline") in kinds and {"hl7v2", "notes_csv"} <= {k for k, _ in kinds}:
            found.append(
                SamplePatient(key, rows, {r["doc_id"]: deid[r["doc_id"]] for r in rows if r["doc_id"] in deid})
            )
    assert len(found) >= 6  # the cohort shares MRNs across FHIR, HL7 and the notes export
    return found


@pytest.mark.slow
def test_one_patient_reads_the_same_in_a_fhir_timeline_an_hl7_message_and_a_note(sample_run, sample_patients):
    replacer = Replacer(sample_run.ctx.secret_key, default_config())
    for patient in sample_patients:
        timeline = next(r for r in patient.raw if r["doc_type"] == "patient_timeline")
        messages = [r for r in patient.raw if r["source_kind"] == "hl7v2"]
        notes = [r for r in patient.raw if r["source_kind"] == "notes_csv"]
        rows = [timeline, *messages, *notes]
        assert all(r["doc_id"] in patient.deid for r in rows)  # nothing was quarantined on the way
        assert {patient.deid[r["doc_id"]]["patient_pseudonym"] for r in rows} == {pseudonym(replacer.key, patient.key)}

        raw_name = _header(timeline["text"], "Patient")
        name = replacer.apply(raw_name, [PhiSpan(0, len(raw_name), "NAME")], patient.key).text
        raw_birth = date.fromisoformat(_header(timeline["text"], "Birth date"))
        birth = (raw_birth - timedelta(days=replacer.date_offset_days(patient.key))).isoformat()
        if date.today().year - raw_birth.year >= 90:  # Safe Harbor: the year that makes the patient 90
            birth = str(date.today().year - 90)
        for row in (timeline, *messages):
            text = patient.deid[row["doc_id"]]["text"]
            assert _header(text, "Patient") == name  # the rule table's surrogate: the text engine's one
            assert _header(text, "MRN") == pseudonym(replacer.key, patient.key)  # FHIR's MR identifier too
            assert _header(text, "Birth date") == birth
            assert raw_name not in text
        # The notes name the patient in their own ways (LAST, FIRST; lower case); the surrogates are the same.
        family = name.split()[-1]
        assert any(family.lower() in patient.deid[n["doc_id"]]["text"].lower() for n in notes)
        assert not any(raw_name.split()[-1].lower() in patient.deid[n["doc_id"]]["text"].lower() for n in notes)


@pytest.mark.slow
def test_structured_dates_and_note_dates_move_by_the_same_offset(sample_run, sample_patients):
    """Every timeline line and HL7 result date moves back by the offset the patient's notes moved by, so the
    interval between any structured event and any note is what it was."""
    for patient in sample_patients:
        notes = [r for r in patient.raw if r["source_kind"] == "notes_csv" and r["metadata"]["event_time"]]
        offsets = {
            (n["metadata"]["event_time"] - patient.deid[n["doc_id"]]["metadata"]["event_time"]).days for n in notes
        }
        [offset] = offsets
        for row in patient.raw:
            if not renders_text(row):  # FHIR timelines and HL7 messages
                continue
            raw_dates = STRUCTURED_DATE.findall(row["text"])
            deid_dates = STRUCTURED_DATE.findall(patient.deid[row["doc_id"]]["text"])
            assert raw_dates and len(raw_dates) == len(deid_dates)
            for before, after in zip(raw_dates, deid_dates, strict=True):
                assert (date.fromisoformat(before) - date.fromisoformat(after)).days == offset


@pytest.mark.slow
def test_no_raw_phi_field_value_survives_in_deid_payloads_or_text(sample_patients):
    """Every value of a PHI field in the raw payloads (names, ids, contact, address, birth date, resource ids)
    is looked for, as a whole word, in the de-identified text and payloads of the same patient."""
    checked = 0
    for patient in sample_patients:
        values: set[str] = {patient.key}
        for row in patient.raw:
            extra = _extra(row)
            if "fhir_json" in extra:
                values |= _fhir_phi(json.loads(extra["fhir_json"]))
            if "hl7_message" in extra:
                values |= _hl7_phi(extra["hl7_message"])
        # As in the residual-PHI gate: a number of fewer than five digits (a clinician's 4-digit id) also occurs
        # by chance, e.g. as a group of a keyed urn:uuid.
        values = {v for v in values if len(v) >= 3 and not (v.isdigit() and len(v) < 5)}
        pattern = re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, sorted(values, key=len)[::-1])) + r")(?!\w)", re.I)
        for row in patient.raw:
            deid = patient.deid[row["doc_id"]]
            structured = {k: v for k, v in _extra(deid).items() if k in ("fhir_json", "hl7_message", "csv_row")}
            assert structured or row["source_kind"] == "notes_csv" and not _extra(row).get("csv_row")
            for text in (deid["text"], *structured.values()):
                assert pattern.findall(text) == []
                checked += 1
    assert checked > 50


def _fhir_phi(resource: dict) -> set[str]:
    """The values of the PHI fields of a raw FHIR payload (Bundle or resource)."""
    found: set[str] = set()
    resources = (
        [e["resource"] for e in resource.get("entry", [])] if resource["resourceType"] == "Bundle" else [resource]
    )
    for r in resources:
        found.add(r["id"])
        found |= {i["value"] for i in r.get("identifier", [])}
        found |= {t["value"] for t in r.get("telecom", [])}
        for name in r.get("name", []) + [c["name"] for c in r.get("contact", []) if "name" in c]:
            found |= {name.get("text", ""), name.get("family", ""), *name.get("given", [])}
        for address in r.get("address", []):
            found |= {*address.get("line", []), address.get("city", ""), address["postalCode"]}
        if "birthDate" in r:
            found.add(r["birthDate"])
        found |= _reference_displays(r)
    return found - {""}


def _reference_displays(node) -> set[str]:
    """Clinicians and organisations named in references ({"display": "Dr. ..."}; codings have a code)."""
    if isinstance(node, list):
        return {v for item in node for v in _reference_displays(item)}
    if not isinstance(node, dict):
        return set()
    found = {v for item in node.values() for v in _reference_displays(item)}
    if "display" in node and "code" not in node:
        found.add(node["display"])  # an organisation: its whole name
        if node["display"].startswith("Dr. "):  # a clinician: each part of the name
            found |= set(node["display"].split()[1:])
    return found


# (segment, field) -> the components that hold PHI
HL7_PHI_FIELDS = {
    ("MSH", 10): (1,), ("PID", 3): (1,), ("PID", 5): (1, 2, 3), ("PID", 7): (1,), ("PID", 11): (1, 3, 5),
    ("PID", 13): (1,), ("PV1", 7): (1, 2, 3), ("PV1", 19): (1,), ("OBR", 2): (1,), ("OBR", 3): (1,),
    ("OBR", 16): (1, 2, 3), ("TXA", 9): (1, 2, 3), ("TXA", 12): (1,),
}  # fmt: skip


def _hl7_phi(message: str) -> set[str]:
    found: set[str] = set()
    for segment in message.split("\r"):
        fields = segment.split("|")
        offset = 1 if fields[0] == "MSH" else 0  # MSH-1 is the separator: MSH-n sits at index n - 1
        for (name, number), components in HL7_PHI_FIELDS.items():
            if name == fields[0] and number - offset < len(fields):
                for repetition in fields[number - offset].split("~"):
                    parts = repetition.split("^")
                    found |= {parts[c - 1] for c in components if c <= len(parts)}
    return found - {""}


def _rules_with(tmp_path, old: str, new: str):
    path = tmp_path / "rules.yaml"
    text = load_rules.__globals__["DEFAULT_RULES"].read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return load_rules(path)


@pytest.mark.parametrize("column", ["state", "city", "zip"])
def test_a_csv_address_column_cannot_be_kept_past_the_address_policy(tmp_path, column):
    with pytest.raises(StructuredRulesError, match=f"patients.{column}: an address part .*address_policy"):
        _rules_with(tmp_path, f"      {column}: {{action: address}}", f"      {column}: {{action: keep}}")


def test_an_address_rule_needs_a_column_the_gate_knows_as_an_address_by_name(tmp_path):
    # The residual-PHI gate finds a notes row's address cells by column name; a rule it cannot see is refused.
    with pytest.raises(StructuredRulesError, match="mimic_notes.note_type: `action: address` needs a column named"):
        _rules_with(tmp_path, "      note_type: {action: keep}", "      note_type: {action: address}")


def test_csv_address_columns_are_kept_or_removed_by_the_address_policy(tmp_path, monkeypatch):
    # Listed columns (the patients profile) and unlisted ones under `unlisted: keep` (County, Country) alike.
    rules = _rules_with(tmp_path, "  patients:\n    patient_column: subject_id\n    unlisted: drop", "  patients:\n"
                        "    patient_column: subject_id\n    unlisted: keep")  # fmt: skip
    row = {"subject_id": "7", "address": "9 Quay St", "city": "Salem", "County": "Essex", "state": "Massachusetts",
           "zip": "01970", "Country": "USA", "note": "walks daily"}  # fmt: skip
    deid = StructuredDeidentifier(KEY, rules=rules, today=TODAY)
    [out] = deid.csv_rows([row], "patients")
    assert {k: out.get(k) for k in ("address", "city", "County", "state", "zip", "Country", "note")} == {
        "address": None, "city": None, "County": None, "state": "Massachusetts", "zip": "019", "Country": "USA",
        "note": "walks daily",
    }  # fmt: skip
    # One definition: when the policy stops keeping the state, the CSV rule drops it with no other change.
    monkeypatch.setattr(address_policy, "KEPT", frozenset({address_policy.Part.COUNTRY}))
    [out] = deid.csv_rows([row], "patients")
    assert "state" not in out and out["Country"] == "USA"

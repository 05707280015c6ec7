"""Structured de-identification: FHIR resources, HL7 v2 PID/NK1/PV1, CSV columns, by the rule table."""

from __future__ import annotations

import json
from datetime import date

import pytest

from medcurate.keys import date_shift_days, pseudonym
from pipelines.deid.config import default_config
from pipelines.deid.dicom_dates import date_offset
from pipelines.deid.engine import DeidEngine, PhiSpan
from pipelines.deid.structured import StructuredDeidentifier, StructuredRulesError, load_rules, text_deidentifier
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
    assert patient["identifier"][0]["value"] == pseudonym(KEY, "48213377", "identifier")
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
    assert deid.counts["csv:drop_unlisted"] == 1


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

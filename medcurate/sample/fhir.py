"""Synthetic FHIR R4 input: per-patient Bundles and a Bulk Data ``$export`` set, for the sample cohort.

The first patients of the cohort get one transaction Bundle each (``urn:uuid`` fullUrls and references, as
Synthea writes them); the others are spread over one NDJSON file per resource type, as a server's
``$export`` writes them (references "Patient/<id>").  Every patient has encounters, conditions, vital signs
and labs, medications, an immunization, a procedure for some, a lab report, and a note (DocumentReference
with base64 text naming the patient, MRN, birth date, phone, address and attending).  Some patients also
get a radiology report whose text is a base64 ``presentedForm``.  Codes are real LOINC, SNOMED CT, RxNorm
and CVX codes so the timelines read like real ones.

One extra NDJSON file holds a line cut in half among valid ones: the demo quarantines that line alone.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from medcurate.sample.people import Patient

BUNDLE_PATIENTS = 4
SNOMED, LOINC, RXNORM, CVX = (
    "http://snomed.info/sct",
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://hl7.org/fhir/sid/cvx",
)
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ENCOUNTER_TYPES = (  # (v3 ActCode class, SNOMED code, display, length of stay in days)
    ("AMB", "185349003", "Encounter for check up", 0),
    ("AMB", "390906007", "Follow-up encounter", 0),
    ("EMER", "50849002", "Emergency room admission", 0),
    ("IMP", "32485007", "Hospital admission", 3),
)


class Problem(NamedTuple):
    """A chronic problem with the drug that treats it and the lab test that follows it."""

    snomed: str
    name: str
    rxnorm: str
    drug: str
    dosage: str
    loinc: str
    lab: str
    unit: str
    low: float
    high: float
    typical: float


PROBLEMS = (
    Problem("44054006", "Type 2 diabetes mellitus", "860975",
            "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
            "1 tablet by mouth daily with evening meal", "4548-4", "Hemoglobin A1c", "%", 4.0, 5.6, 7.4),
    Problem("38341003", "Hypertensive disorder", "314076", "lisinopril 10 MG Oral Tablet",
            "1 tablet by mouth daily", "2160-0", "Creatinine", "mg/dL", 0.6, 1.3, 1.1),
    Problem("55822004", "Hyperlipidemia", "259255", "atorvastatin 80 MG Oral Tablet",
            "1 tablet by mouth at bedtime", "2093-3", "Cholesterol total", "mg/dL", 125.0, 200.0, 236.0),
    Problem("195967001", "Asthma", "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
            "2 puffs every 4 hours as needed for wheezing", "19926-5", "FEV1/FVC", "%", 70.0, 85.0, 68.0),
    Problem("49436004", "Atrial fibrillation", "855332", "warfarin sodium 5 MG Oral Tablet",
            "1 tablet by mouth daily, adjust to INR", "6301-6", "INR", "{INR}", 2.0, 3.0, 2.6),
    Problem("35489007", "Depressive disorder", "312938", "sertraline 100 MG Oral Tablet",
            "1 tablet by mouth daily", "44261-6", "PHQ-9 total score", "{score}", 0.0, 4.0, 11.0),
)  # fmt: skip

PROCEDURES = (
    ("73761001", "Colonoscopy"),
    ("399208008", "Plain chest X-ray"),
    ("430193006", "Medication reconciliation"),
    ("29303009", "Electrocardiographic procedure"),
)
VACCINES = (
    ("140", "Influenza, seasonal, injectable, preservative free"),
    ("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"),
    ("115", "Tdap"),
)
RADIOLOGY_FINDINGS = (
    "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.",
    "Mild cardiomegaly. No focal consolidation. Small left pleural effusion.",
    "Patchy opacity in the right lower lobe, compatible with pneumonia in the appropriate clinical setting.",
)

Ref = Callable[[str, str], dict[str, str]]


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S-05:00")


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


class _PatientRecord:
    """All resources of one synthetic patient, with references built by the chosen ``ref`` style."""

    def __init__(self, patient: Patient, rng: random.Random) -> None:
        self.p = patient
        self.rng = rng
        self._uuid()  # drawn all the same, so every other generated value stays as it was
        # The sample's FHIR server uses the MRN as the Patient's logical id: the same person then has one patient
        # key in FHIR, HL7 and the notes export, which cross-source consistency and erasure are tested against.
        self.patient_id = patient.mrn

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def resources(self, ref: Ref) -> list[dict[str, Any]]:
        p, rng = self.p, self.rng
        subject = ref("Patient", self.patient_id)
        out: list[dict[str, Any]] = [self._patient()]
        problems = rng.sample(PROBLEMS, k=rng.randint(1, 2))
        start = max(date(2016, 1, 1), p.birth_date + timedelta(days=30))
        days = sorted(rng.sample(range(0, (date(2025, 6, 30) - start).days), k=rng.randint(2, 3)))
        visits = []
        for n, offset in enumerate(days):
            cls, code, display, stay = ENCOUNTER_TYPES[0] if n == 0 else rng.choice(ENCOUNTER_TYPES)
            began = datetime.combine(start + timedelta(days=offset), datetime.min.time()) + timedelta(
                hours=rng.randint(7, 17), minutes=rng.choice((0, 15, 30, 45))
            )
            ended = began + timedelta(days=stay, hours=1 + rng.randint(0, 3))
            enc_id = self._uuid()
            visits.append((enc_id, began, ended))
            out.append(
                {
                    "resourceType": "Encounter",
                    "id": enc_id,
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": cls},
                    "type": [_coding(SNOMED, code, display)],
                    "subject": subject,
                    "participant": [{"individual": {"display": f"Dr. {p.attending.full}"}}],
                    "period": {"start": _ts(began), "end": _ts(ended)},
                    "reasonCode": [_coding(SNOMED, problems[0].snomed, problems[0].name)] if n else [],
                    "serviceProvider": {"display": p.hospital},
                }
            )
        first_enc, first_time, _ = visits[0]
        for problem in problems:
            out.append(self._condition(problem, subject, ref("Encounter", first_enc), first_time))
            out.append(self._medication(problem, subject, ref("Encounter", first_enc), first_time))
        lab_results = []
        for enc_id, began, _ in visits:
            enc = ref("Encounter", enc_id)
            out.extend(self._vitals(subject, enc, began))
        for problem in problems:
            lab = self._lab(problem, subject, ref("Encounter", first_enc), first_time + timedelta(minutes=40))
            lab_results.append(lab)
            out.append(lab)
        out.append(self._lab_report(problems, lab_results, subject, ref, first_enc, first_time))
        out.append(self._immunization(subject, ref("Encounter", visits[-1][0]), visits[-1][1]))
        if rng.random() < 0.6:
            code, display = rng.choice(PROCEDURES)
            out.append(
                {
                    "resourceType": "Procedure",
                    "id": self._uuid(),
                    "status": "completed",
                    "code": _coding(SNOMED, code, display),
                    "subject": subject,
                    "encounter": ref("Encounter", visits[-1][0]),
                    "performedPeriod": {"start": _ts(visits[-1][1] + timedelta(minutes=50))},
                }
            )
        if rng.random() < 0.5:
            out.append(self._radiology(subject, ref("Encounter", visits[-1][0]), visits[-1][1]))
        out.append(self._note(problems, subject, ref("Encounter", visits[-1][0]), visits[-1][1]))
        return out

    def _patient(self) -> dict[str, Any]:
        p = self.p
        return {
            "resourceType": "Patient",
            "id": self.patient_id,
            "identifier": [
                {
                    "type": _coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "Medical Record Number"),
                    "system": "http://hospital.example.org/mrn",
                    "value": p.mrn,
                },
                {"system": "http://hl7.org/fhir/sid/us-ssn", "value": p.ssn},
            ],
            "name": [{"use": "official", "family": p.person.last, "given": [p.person.first]}],
            "telecom": [
                {"system": "phone", "value": p.phone, "use": "home"},
                {"system": "email", "value": p.email},
            ],
            "gender": "female" if p.person.sex == "F" else "male",
            "birthDate": p.birth_date.isoformat(),
            "address": [
                {"line": [p.street], "city": p.city, "state": p.state, "postalCode": p.zip_code, "country": "US"}
            ],
            "contact": [{"name": {"text": p.next_of_kin.full}, "relationship": [{"text": "next of kin"}]}],
        }

    def _condition(self, problem: Problem, subject: dict, encounter: dict, when: datetime) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "id": self._uuid(),
            "clinicalStatus": _coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
            "code": _coding(SNOMED, problem.snomed, problem.name),
            "subject": subject,
            "encounter": encounter,
            "onsetDateTime": _ts(when),
        }

    def _medication(self, problem: Problem, subject: dict, encounter: dict, when: datetime) -> dict[str, Any]:
        return {
            "resourceType": "MedicationRequest",
            "id": self._uuid(),
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": _coding(RXNORM, problem.rxnorm, problem.drug),
            "subject": subject,
            "encounter": encounter,
            "authoredOn": _ts(when + timedelta(minutes=55)),
            "dosageInstruction": [{"text": problem.dosage}],
        }

    def _observation(self, subject: dict, encounter: dict, when: datetime, **fields: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": self._uuid(),
            "status": "final",
            "subject": subject,
            "encounter": encounter,
            "effectiveDateTime": _ts(when),
            **fields,
        }

    def _vitals(self, subject: dict, encounter: dict, when: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        vital = [_coding(OBSERVATION_CATEGORY, "vital-signs", "Vital signs")]
        systolic, diastolic = rng.randint(108, 162), rng.randint(64, 98)
        return [
            self._observation(
                subject,
                encounter,
                when + timedelta(minutes=10),
                category=vital,
                code=_coding(LOINC, "85354-9", "Blood pressure panel with all children optional"),
                component=[
                    {
                        "code": _coding(LOINC, "8480-6", "Systolic blood pressure"),
                        "valueQuantity": {"value": systolic, "unit": "mm[Hg]"},
                    },
                    {
                        "code": _coding(LOINC, "8462-4", "Diastolic blood pressure"),
                        "valueQuantity": {"value": diastolic, "unit": "mm[Hg]"},
                    },
                ],
            ),
            self._observation(
                subject,
                encounter,
                when + timedelta(minutes=10),
                category=vital,
                code=_coding(LOINC, "8867-4", "Heart rate"),
                valueQuantity={"value": rng.randint(56, 104), "unit": "/min"},
            ),
            self._observation(
                subject,
                encounter,
                when + timedelta(minutes=11),
                category=vital,
                code=_coding(LOINC, "29463-7", "Body weight"),
                valueQuantity={"value": round(rng.uniform(48, 118), 1), "unit": "kg"},
            ),
        ]

    def _lab(self, problem: Problem, subject: dict, encounter: dict, when: datetime) -> dict[str, Any]:
        low, high, unit = problem.low, problem.high, problem.unit
        value = round(problem.typical * self.rng.uniform(0.85, 1.15), 1)
        flag = "H" if value > high else ("L" if value < low else "N")
        return self._observation(
            subject,
            encounter,
            when,
            category=[_coding(OBSERVATION_CATEGORY, "laboratory", "Laboratory")],
            code=_coding(LOINC, problem.loinc, problem.lab),
            valueQuantity={"value": value, "unit": unit},
            referenceRange=[{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}],
            interpretation=[
                _coding(
                    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                    flag,
                    {"H": "High", "L": "Low", "N": "Normal"}[flag],
                )
            ],
        )

    def _lab_report(
        self,
        problems: list[Problem],
        labs: list[dict[str, Any]],
        subject: dict,
        ref: Ref,
        encounter_id: str,
        when: datetime,
    ) -> dict[str, Any]:
        report: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": self._uuid(),
            "status": "final",
            "category": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")],
            "code": _coding(LOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"),
            "subject": subject,
            "encounter": ref("Encounter", encounter_id),
            "effectiveDateTime": _ts(when + timedelta(minutes=40)),
            "issued": _ts(when + timedelta(hours=5)),
            "result": [ref("Observation", lab["id"]) for lab in labs],
        }
        high = [lab["code"]["text"] for lab in labs if lab["interpretation"][0]["coding"][0]["code"] == "H"]
        if high:
            report["conclusion"] = f"{', '.join(high)} above the reference range; consistent with {problems[0].name}."
        return report

    def _immunization(self, subject: dict, encounter: dict, when: datetime) -> dict[str, Any]:
        code, display = self.rng.choice(VACCINES)
        return {
            "resourceType": "Immunization",
            "id": self._uuid(),
            "status": "completed",
            "vaccineCode": _coding(CVX, code, display),
            "patient": subject,
            "encounter": encounter,
            "occurrenceDateTime": _ts(when + timedelta(minutes=45)),
            "primarySource": True,
        }

    def _radiology(self, subject: dict, encounter: dict, when: datetime) -> dict[str, Any]:
        p = self.p
        text = (
            f"CHEST RADIOGRAPH, 2 VIEWS\n"
            f"Patient: {p.person.last}, {p.person.first}   MRN: {p.mrn}   DOB: {p.birth_date:%m/%d/%Y}\n"
            f"Exam date: {when:%m/%d/%Y}   Ordering physician: Dr. {p.attending.full}\n\n"
            f"INDICATION: Cough and shortness of breath.\n"
            f"FINDINGS: {self.rng.choice(RADIOLOGY_FINDINGS)}\n"
            f"IMPRESSION: See findings. Comparison with prior imaging at {p.hospital} recommended.\n"
        )
        return {
            "resourceType": "DiagnosticReport",
            "id": self._uuid(),
            "status": "final",
            "category": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")],
            "code": _coding(LOINC, "36643-5", "XR Chest 2 Views"),
            "subject": subject,
            "encounter": encounter,
            "effectiveDateTime": _ts(when + timedelta(hours=1)),
            "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": _b64(text)}],
        }

    def _note(self, problems: list[Problem], subject: dict, encounter: dict, when: datetime) -> dict[str, Any]:
        p, rng = self.p, self.rng
        pronoun = "She" if p.person.sex == "F" else "He"
        names = " and ".join(p.name.lower() for p in problems)
        meds = "; ".join(f"{p.drug}, {p.dosage}" for p in problems)
        text = (
            f"PROGRESS NOTE - {p.hospital}\n"
            f"Patient: {p.person.full}    MRN: {p.mrn}    DOB: {p.birth_date:%m/%d/%Y}\n"
            f"Date of service: {when:%m/%d/%Y}    Attending: Dr. {p.attending.full}\n\n"
            f"SUBJECTIVE: {p.person.first} is a {_age(p.birth_date, when.date())}-year-old seen for follow-up of "
            f"{names}. {pronoun} reports {rng.choice(('good adherence', 'missing a few doses', 'mild fatigue'))}"
            f" and no chest pain. Lives at {p.street}, {p.city}, {p.state} {p.zip_code}; "
            f"phone {p.phone}. Emergency contact: {p.next_of_kin.full}.\n"
            f"OBJECTIVE: BP {rng.randint(118, 150)}/{rng.randint(70, 92)}, HR {rng.randint(60, 96)}. "
            f"Lungs clear, heart regular.\n"
            f"ASSESSMENT AND PLAN: {problems[0].name}, {rng.choice(('stable', 'improving', 'not at goal'))}. "
            f"Continue {meds}. Follow up in {rng.choice((4, 8, 12))} weeks.\n"
            f"Electronically signed by Dr. {p.attending.last} on {when:%m/%d/%Y}.\n"
        )
        return {
            "resourceType": "DocumentReference",
            "id": self._uuid(),
            "status": "current",
            "type": _coding(LOINC, "11506-3", "Progress note"),
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                            "code": "clinical-note",
                        }
                    ]
                }
            ],
            "subject": subject,
            "date": _ts(when + timedelta(hours=2)),
            "author": [{"display": f"Dr. {p.attending.full}"}],
            "description": "Progress note",
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": _b64(text)}}],
            "context": {"encounter": [encounter], "period": {"start": _ts(when)}},
        }


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": r,
                "request": {"method": "POST", "url": r["resourceType"]},
            }
            for r in resources
        ],
    }


def write(out_dir: Path, cohort: list[Patient], seed: int) -> list[str]:
    """Write the FHIR sample under ``out_dir/incoming/fhir``; returns the PHI strings it planted."""
    rng = random.Random(f"{seed}:fhir")
    fhir_dir = out_dir / "incoming" / "fhir"
    fhir_dir.mkdir(parents=True, exist_ok=True)
    records = [_PatientRecord(p, rng) for p in cohort]

    for i, record in enumerate(records[:BUNDLE_PATIENTS], start=1):
        resources = record.resources(lambda rtype, rid: {"reference": f"urn:uuid:{rid}"})
        (fhir_dir / f"bundle-{i:02d}.json").write_text(json.dumps(_bundle(resources), indent=1))

    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records[BUNDLE_PATIENTS:]:
        for resource in record.resources(lambda rtype, rid: {"reference": f"{rtype}/{rid}"}):
            by_type[resource["resourceType"]].append(resource)
    for rtype, resources in sorted(by_type.items()):
        lines = [json.dumps(r, separators=(",", ":")) for r in resources]
        (fhir_dir / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")

    # A second Observation file from an interrupted export: its middle line is cut short.
    late = [r for r in by_type["Observation"] if r["code"]["coding"][0]["code"] == "8867-4"][:3]
    lines = [json.dumps({**r, "id": f"{r['id']}-late"}, separators=(",", ":")) for r in late]
    lines[1] = lines[1][: len(lines[1]) // 2]
    (fhir_dir / "Observation_2.ndjson").write_text("\n".join(lines) + "\n")

    planted = []
    for p in cohort:
        planted += [p.attending.full, p.next_of_kin.full, p.email, p.ssn]
    return planted

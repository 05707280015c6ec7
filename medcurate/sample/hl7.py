"""Synthetic HL7 v2 feeds for the sample cohort: lab results (ORU^R01) and transcribed notes (MDM^T02).

Files look like what an interface engine captures: ``results.hl7`` holds carriage-return separated ORU
messages (numeric chemistry and hematology panels with reference ranges and flags, and a narrative
radiology report) plus one ADT^A08 that the parser must reject as an unsupported type; ``results-mllp.hl7``
keeps the MLLP framing bytes; ``documents.hl7`` holds MDM^T02 notes whose text uses HL7 escapes (\\.br\\ line
breaks, \\T\\ for "&").  PID carries the cohort's MRN, name, birth date, sex, address and phone.

``legacy-feed.hl7`` is the deliberately bad file: an older system wrote it in Latin-1 ("4°C"), so it is not
UTF-8 and the whole file is quarantined.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path

from medcurate.sample.people import Patient, Person

# (LOINC, name, unit, low, high, decimals)
PANELS = {
    ("24323-8", "Comprehensive metabolic panel"): (
        ("2345-7", "Glucose", "mg/dL", 70, 99, 0),
        ("2160-0", "Creatinine", "mg/dL", 0.6, 1.3, 2),
        ("2951-2", "Sodium", "mmol/L", 135, 145, 0),
        ("2823-3", "Potassium", "mmol/L", 3.5, 5.1, 1),
    ),
    ("58410-2", "CBC panel - Blood by Automated count"): (
        ("6690-2", "WBC", "10*3/uL", 4.0, 11.0, 1),
        ("718-7", "Hemoglobin", "g/dL", 12.0, 17.5, 1),
        ("4544-3", "Hematocrit", "%", 36.0, 50.0, 1),
        ("777-3", "Platelets", "10*3/uL", 150, 400, 0),
    ),
}
IMPRESSIONS = (
    "No acute cardiopulmonary process.",
    "Small right pleural effusion with adjacent atelectasis.",
    "Stable mild cardiomegaly; no edema.",
)
NOTE_TYPES = (("PN", "Progress Note"), ("DS", "Discharge Summary"), ("CN", "Consultation Note"))
FACILITY = "LAB^Central Laboratory"


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def _xcn(person: Person, rng: random.Random) -> str:
    return f"{rng.randint(1000, 9999)}^{person.last}^{person.first}^^^Dr."


def _msh(kind: str, control_id: str, when: datetime, version: str = "2.5.1") -> str:
    return f"MSH|^~\\&|LIS|{FACILITY}|EHR|MAIN|{_ts(when)}||{kind}|{control_id}|P|{version}"


def _segment(name: str, fields: dict[int, str]) -> str:
    """A segment from its non-empty fields, by HL7 field number (PV1-19 is ``{19: ...}``)."""
    values = [""] * (max(fields) + 1)
    values[0] = name
    for n, value in fields.items():
        values[n] = value
    return "|".join(values)


def _pid(p: Patient) -> str:
    return _segment(
        "PID",
        {
            1: "1",
            3: f"{p.mrn}^^^MAIN^MR",
            5: f"{p.person.last}^{p.person.first}^^^^^L",
            7: p.birth_date.strftime("%Y%m%d"),
            8: p.person.sex,
            11: f"{p.street}^^{p.city}^{p.state}^{p.zip_code}^USA",
            13: p.phone,
            19: p.ssn,
        },
    )


def _pv1(p: Patient, rng: random.Random) -> str:
    visit = f"V{rng.randint(100000, 999999)}"
    return _segment("PV1", {1: "1", 2: "O", 3: "CLINIC^^^MAIN", 7: _xcn(p.attending, rng), 19: visit})


def _visit_time(p: Patient, rng: random.Random) -> datetime:
    start = max(date(2017, 1, 1), p.birth_date + timedelta(days=30))
    day = start + timedelta(days=rng.randint(0, (date(2025, 6, 30) - start).days))
    return datetime.combine(day, datetime.min.time()) + timedelta(hours=rng.randint(6, 18), minutes=rng.randint(0, 59))


def _oru_lab(p: Patient, control_id: str, rng: random.Random) -> list[str]:
    when = _visit_time(p, rng)
    segments = [_msh("ORU^R01^ORU_R01", control_id, when + timedelta(hours=3)), _pid(p)]
    segments.append(_pv1(p, rng))
    for n, ((code, name), tests) in enumerate(PANELS.items(), start=1):
        segments.append(
            _segment(
                "OBR",
                {
                    1: str(n),
                    2: f"ORD{rng.randint(10000, 99999)}",
                    4: f"{code}^{name}^LN",
                    7: _ts(when),
                    16: _xcn(p.attending, rng),
                    22: _ts(when + timedelta(hours=3)),
                    25: "F",
                },
            )
        )
        for i, (loinc, test, unit, low, high, decimals) in enumerate(tests, start=1):
            value = round(rng.uniform(low * 0.85, high * 1.15), decimals)
            value_text = f"{value:.{decimals}f}"
            flag = "H" if value > high else ("L" if value < low else "N")
            segments.append(f"OBX|{i}|NM|{loinc}^{test}^LN||{value_text}|{unit}|{low}-{high}|{flag}|||F|||{_ts(when)}")
    segments.append(f"NTE|1||Specimen collected by venipuncture; reviewed by Dr. {p.attending.last}.")
    return segments


def _oru_radiology(p: Patient, control_id: str, rng: random.Random) -> list[str]:
    when = _visit_time(p, rng)
    return [
        _msh("ORU^R01^ORU_R01", control_id, when + timedelta(hours=2)),
        _pid(p),
        _segment("OBR", {1: "1", 2: f"RAD{rng.randint(10000, 99999)}", 4: "36643-5^XR Chest 2 Views^LN", 7: _ts(when)}),
        "OBX|1|TX|36643-5^XR Chest 2 Views^LN|1|EXAM: Chest radiograph, PA and lateral.||||||F",
        f"OBX|2|TX|36643-5^XR Chest 2 Views^LN|2|CLINICAL HISTORY: {p.person.first} {p.person.last}, cough "
        "\\T\\ fever for 3 days.||||||F",
        "OBX|3|FT|36643-5^XR Chest 2 Views^LN|3|FINDINGS:\\.br\\Lungs are expanded. Cardiomediastinal "
        "silhouette within normal limits.\\.br\\No pneumothorax.||||||F",
        f"OBX|4|TX|36643-5^XR Chest 2 Views^LN|4|IMPRESSION: {rng.choice(IMPRESSIONS)}||||||F",
    ]


def _mdm(p: Patient, control_id: str, rng: random.Random) -> list[str]:
    when = _visit_time(p, rng)
    code, name = rng.choice(NOTE_TYPES)
    lines = [
        f"{name.upper()}",
        f"Patient: {p.person.full}  MRN: {p.mrn}  DOB: {p.birth_date:%m/%d/%Y}",
        f"Seen on {when:%m/%d/%Y} at {p.hospital}.",
        f"{p.person.first} presents with shortness of breath \\T\\ fatigue for two weeks. "
        f"Lives at {p.street}, {p.city}; phone {p.phone}.",
        f"Vitals: BP {rng.randint(110, 160)}/{rng.randint(65, 95)}, SpO2 {rng.randint(91, 99)}%.",
        f"Plan: labs (CBC \\T\\ BMP), chest X-ray, follow up with Dr. {p.attending.last} in 2 weeks.",
        f"Discussed with next of kin {p.next_of_kin.full}.",
    ]
    return [
        _msh("MDM^T02^MDM_T02", control_id, when + timedelta(hours=4), version="2.6"),
        "EVN|T02|" + _ts(when + timedelta(hours=4)),
        _pid(p),
        _pv1(p, rng),
        f"TXA|1|{code}^{name}|TX|{_ts(when)}|||{_ts(when + timedelta(hours=1))}||{_xcn(p.attending, rng)}"
        f"|||DOC{rng.randint(100000, 999999)}|||||AU||AV",
        # One OBX per paragraph, the paragraph's own line breaks escaped as \.br\ (as transcription systems do).
        "OBX|1|TX|11506-3^Progress note^LN|1|" + "\\.br\\".join(lines[:3]) + "||||||F",
        *(f"OBX|{i}|TX|11506-3^Progress note^LN|{i}|{line}||||||F" for i, line in enumerate(lines[3:], start=2)),
    ]


def _adt(p: Patient, control_id: str, rng: random.Random) -> list[str]:
    when = _visit_time(p, rng)
    return [_msh("ADT^A08^ADT_A01", control_id, when), "EVN|A08|" + _ts(when), _pid(p)]


def _write(path: Path, messages: list[list[str]], mllp: bool = False, encoding: str = "utf-8") -> None:
    texts = ["\r".join(segments) + "\r" for segments in messages]
    if mllp:
        texts = [f"\x0b{t}\x1c\r" for t in texts]
    path.write_bytes("".join(texts).encode(encoding))


def write(out_dir: Path, cohort: list[Patient], seed: int) -> list[str]:
    """Write the HL7 v2 sample under ``out_dir/incoming/hl7``; returns the PHI strings it planted."""
    rng = random.Random(f"{seed}:hl7")
    hl7_dir = out_dir / "incoming" / "hl7"
    hl7_dir.mkdir(parents=True, exist_ok=True)
    ids = iter(range(1, 10_000))

    def control_id() -> str:
        return f"MSG{seed % 100000:05d}{next(ids):04d}"

    half = len(cohort) // 2
    results = [_oru_lab(p, control_id(), rng) for p in cohort[:half]]
    results.insert(1, _adt(cohort[0], control_id(), rng))
    results.append(_oru_radiology(cohort[half], control_id(), rng))
    _write(hl7_dir / "results.hl7", results)
    _write(hl7_dir / "results-mllp.hl7", [_oru_lab(p, control_id(), rng) for p in cohort[half:]], mllp=True)
    _write(hl7_dir / "documents.hl7", [_mdm(p, control_id(), rng) for p in cohort[: half + 1]])

    legacy = _oru_lab(cohort[-1], control_id(), rng)
    legacy.append("NTE|2||Specimen stored at 4°C before analysis.")
    _write(hl7_dir / "legacy-feed.hl7", [legacy], encoding="latin-1")

    planted = set()
    for p in cohort:  # every patient has a PID and an ordering or attending doctor (XCN)
        planted |= {f"{p.person.last}^{p.person.first}", p.birth_date.strftime("%Y%m%d")}
        planted.add(f"{p.attending.last}^{p.attending.first}")
    for p in cohort[: half + 1]:  # the notes also name the next of kin; the parser renders TXA-9 as a name
        planted |= {p.next_of_kin.full, p.attending.full}
    return sorted(planted)

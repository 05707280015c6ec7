"""Synthetic clinical notes (MIMIC-IV-Note-style CSV) with gold PHI spans.

Notes are rendered from templates in several house styles (ALL-CAPS nursing notes, discharge summaries,
radiology reports, telegraphic progress notes).  A template marks PHI as ``{LABEL:key}`` and plain values as
``{key}``; rendering records the character span of every PHI value, so the gold standard is exact by
construction.  The clinical body between the PHI lines is a plain value written by ``clinical.py`` for each
patient and note, so that notes of different patients are different documents, as near-duplicate detection
expects of real ones.  The same renderer builds the larger dev/test sets in ``medcurate.sample.deid_gold``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from medcurate.sample import clinical
from medcurate.sample.people import HOSPITALS, Patient, make_person

PLACEHOLDER = re.compile(r"\{(?:([A-Z]+):)?(\w+)\}")

# ---- templates: one string per note; "{LABEL:key}" is PHI, "{key}" is a plain value ----
# The PHI sits in the header and footer lines of each house style; the clinical body is a plain value written per
# patient and per note by clinical.py, so notes of different patients do not read as one template.
NURSING = """\
NURSING PROGRESS NOTE {NAME:nurse_first_up} {NAME:nurse_last_up} RN  {DATE:date_mdy2}
PT {NAME:pt_last_up}, {NAME:pt_first_up}  MRN {ID:mrn}
{nursing_systems}
SOCIAL: {REL:rel_up} {NAME:nok_first_up} {NAME:nok_last_up} VISITED, CAN BE REACHED AT {PHONE:phone}.
PLAN: {nursing_plan}. DR {NAME:att_last_up} UPDATED.
"""

DISCHARGE = """\
DISCHARGE SUMMARY

Name: {NAME:pt_first} {NAME:pt_last}        Unit No: {ID:mrn}
Admission Date: {DATE:admit_mdy}        Discharge Date: {DATE:disch_mdy}
Date of Birth: {DATE:dob_mdy}        Sex: {sex}
Service: {service}
Attending: {NAME:att_first} {NAME:att_last}, MD

HISTORY OF PRESENT ILLNESS:
{pt_title} {NAME:pt_last} is a {AGE:age_num}-year-old {sex_word} with {history} who presented to
{HOSPITAL:hospital} on {DATE:admit_text} with {presentation}. On exam: {exam}. {studies}

HOSPITAL COURSE:
{course}
Transitioned to oral medications on {DATE:mid_md}.

Labs on discharge: {labs}.

DISCHARGE MEDICATIONS: {medications}.

DISPOSITION: {disposition}. Address on file: {ADDRESS:street}, {LOCATION:city}, {LOCATION:state} {ZIP:zip}.
FOLLOW-UP: PCP Dr. {NAME:pcp_last} at {HOSPITAL:clinic} in {fu_weeks}, phone {PHONE:phone2}. {plan}.
Questions: {EMAIL:email}.

{NAME:att_first} {NAME:att_last}, MD    Electronically signed {DATE:disch_iso} {sign_time}
"""

RADIOLOGY = """\
EXAMINATION: {study}    ACCESSION #: {ID:accession}
DATE: {DATE:exam_text}    REFERRING: {NAME:ref_first_init} {NAME:ref_last}, MD
INDICATION: {AGE:age_num} year old {sex_word} with {history}, now {indication}.
COMPARISON: {comparison} {DATE:prior_text}.
FINDINGS: {findings}
IMPRESSION: {impression}
Dictated by: {NAME:rad_first} {NAME:rad_last}, M.D. (NPI {LICENSE:npi})
Workstation: {IP:ip}   Report portal {URL:url}
"""

PROGRESS = """\
Progress Note - {unit} - {DATE:prog_date}
S: {NAME:pt_first_low} {NAME:pt_last_low} reports {subjective}. {REL:rel_cap} {NAME:nok_first} at bedside.
O: Tmax {tmax}, HR {hr}, BP {sbp}/{dbp}, RR {rr}, SpO2 {spo2}%.
Exam: {exam}.
Labs: {labs}. {studies}
A/P: {AGE:age_num} y/o w/ {history} admitted with {problem} on {DATE:proc_md}. {plan}.
{consultant} (Dr. {NAME:surg_last}) following. Code: {code}. Dispo: {disposition}.
Contact: {NAME:nok_first} {NAME:nok_last} ({REL:rel}) {PHONE:phone}. SSN on file {SSN:ssn}.
-- {NAME:res_first} {NAME:res_last}, MD PGY-{pgy}, pager {PHONE:pager}
"""

CONSULT = """\
GERIATRICS CONSULT   Pt: {NAME:pt_full}   DOB: {DATE:dob_iso}   Age: {AGE:age_num}
Reason: {geri_reasons}. Referred by {ref_title} {NAME:ref_last} from {HOSPITAL:hospital}.
{pt_title} {NAME:pt_last} is a {AGE:age_num} yo {sex_word} with {history} who lives at {ADDRESS:street},
{LOCATION:city} and was admitted on {DATE:admit_text} with {problem}. {REL:rel_cap} {NAME:nok_first} reports
{geri_story} since {DATE:month_only}. {geri_findings} Social: {social}.
Meds reviewed: {medications}.
Rec: {geri_recs}; f/u in geriatrics clinic {DATE:fu_text}.
Health plan member ID {ID:member_id}. Medicare # {ID:medicare}. Pacemaker serial {DEVICE:serial}.
{NAME:geri_first} {NAME:geri_last}, NP
"""

STYLES: dict[str, str] = {
    "Nursing": NURSING,
    "Discharge summary": DISCHARGE,
    "Radiology": RADIOLOGY,
    "Progress": PROGRESS,
    "Consult": CONSULT,
}
RELATIONS = ("wife", "husband", "daughter", "son", "sister", "brother", "niece", "friend")
MONTHS = "January February March April May June July August September October November December".split()


def render(template: str, values: dict[str, str]) -> tuple[str, list[dict]]:
    """Fill a template; return the text and the gold span of every ``{LABEL:key}`` value.

    ``REL`` marks a relation word that is not PHI: it is rendered without a span.
    """
    out: list[str] = []
    spans: list[dict] = []
    pos = 0
    length = 0
    for m in PLACEHOLDER.finditer(template):
        literal = template[pos : m.start()]
        out.append(literal)
        length += len(literal)
        label, key = m.group(1), m.group(2)
        value = values[key]
        if label and label != "REL" and value:
            spans.append({"start": length, "end": length + len(value), "label": label})
        out.append(value)
        length += len(value)
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 11 <= n % 100 <= 13 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _text_date(d: date, rng: random.Random) -> str:
    forms = (
        f"{MONTHS[d.month - 1]} {d.day}, {d.year}",
        f"{MONTHS[d.month - 1][:3]} {_ordinal(d.day)}",
        f"{_ordinal(d.day)} of {MONTHS[d.month - 1]}",
        f"{d.day:02d}-{MONTHS[d.month - 1][:3].upper()}-{d.year}",
        f"{d.day} {MONTHS[d.month - 1]} {d.year}",
        f"{d.month}/{d.day}/{d.year % 100:02d}",
        f"{d.year}-{d.month:02d}-{d.day:02d}",
    )
    return rng.choice(forms)


def note_values(
    patient: Patient, charttime: datetime, rng: random.Random, hospitals: Sequence[str] = HOSPITALS
) -> dict[str, str]:
    """Every placeholder value for one note about ``patient`` written at ``charttime``."""
    p = patient.person
    day = charttime.date()
    admit = day - timedelta(days=rng.randint(2, 9))
    age = _age(patient.birth_date, day)
    nurse, rad, surg, res, geri, pcp, ref = (make_person(rng) for _ in range(7))
    title = {"M": "Mr.", "F": "Mrs."}[p.sex]
    sex_word = {"M": "man", "F": "woman"}[p.sex]
    values = {
        "pt_first": p.first,
        "pt_last": p.last,
        "pt_full": p.full,
        "pt_first_up": p.first.upper(),
        "pt_last_up": p.last.upper(),
        "pt_first_low": p.first.lower(),
        "pt_last_low": p.last.lower(),
        "pt_title": title,
        "nurse_first_up": nurse.first.upper(),
        "nurse_last_up": nurse.last.upper(),
        "att_first": patient.attending.first,
        "att_last": patient.attending.last,
        "att_last_up": patient.attending.last.upper(),
        "nok_first": patient.next_of_kin.first,
        "nok_last": patient.next_of_kin.last,
        "nok_first_up": patient.next_of_kin.first.upper(),
        "nok_last_up": patient.next_of_kin.last.upper(),
        "rel": rng.choice(RELATIONS),
        "rad_first": rad.first,
        "rad_last": rad.last,
        "surg_last": surg.last,
        "res_first": res.first,
        "res_last": res.last,
        "geri_first": geri.first,
        "geri_last": geri.last,
        "pcp_last": pcp.last,
        "ref_first_init": ref.first[0] + ".",
        "ref_last": ref.last,
        "ref_title": rng.choice(("Dr.", "Dr", "Doctor")),
        "mrn": patient.mrn,
        "ssn": patient.ssn,
        "phone": patient.phone,
        "phone2": f"{rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
        "pager": f"{rng.randint(10000, 99999)}",
        "email": patient.email,
        "street": patient.street,
        "city": patient.city,
        "state": patient.state,
        "zip": patient.zip_code,
        "hospital": patient.hospital,
        "clinic": rng.choice(hospitals),
        "accession": f"{rng.choice(('RAD', 'XR', 'A'))}{rng.randint(1_000_000, 9_999_999)}",
        "npi": str(rng.randint(1_000_000_000, 1_999_999_999)),
        "ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "url": f"https://pacs.{patient.hospital.split()[0].lower().strip('.')}-health.org/viewer"
        f"?id={rng.randint(1000, 99999)}",
        "member_id": f"{rng.choice('ABCWXYZ')}{rng.choice('ABCDEFGH')}{rng.randint(100_000_000, 999_999_999)}",
        "medicare": f"{rng.randint(1, 9)}EG{rng.randint(1, 9)}-TE{rng.randint(1, 9)}-MK{rng.randint(10, 99)}",
        "serial": f"PJN{rng.randint(100_000, 999_999)}S",
        "date_mdy2": f"{day.month:02d}/{day.day:02d}/{day.year % 100:02d}",
        "admit_mdy": admit.strftime("%m/%d/%Y"),
        "disch_mdy": day.strftime("%m/%d/%Y"),
        "disch_iso": day.isoformat(),
        "dob_mdy": patient.birth_date.strftime("%m/%d/%Y"),
        "dob_iso": patient.birth_date.isoformat(),
        "admit_text": _text_date(admit, rng),
        "mid_md": f"{(admit + timedelta(days=1)).month}/{(admit + timedelta(days=1)).day}",
        "exam_text": _text_date(day, rng),
        "prior_text": _text_date(day - timedelta(days=rng.randint(30, 700)), rng),
        "prog_date": day.strftime(rng.choice(("%m/%d/%Y", "%Y-%m-%d", "%b %d %Y", "%d.%m.%Y"))),
        "proc_md": f"{admit.month}/{admit.day}",
        "fu_text": rng.choice(("on ", "")) + _text_date(day + timedelta(days=rng.randint(7, 30)), rng),
        "month_only": MONTHS[admit.month - 1],
        "age_num": str(age),
        "sex": p.sex,
        "sex_word": sex_word,
        "pain": str(rng.randint(0, 10)),
        "hr": str(rng.randint(55, 120)),
        "sbp": str(rng.randint(95, 170)),
        "dbp": str(rng.randint(50, 100)),
        "k": f"{rng.uniform(3.0, 5.2):.1f}",
        "spo2": str(rng.randint(88, 100)),
        "rr": str(rng.randint(12, 28)),
        "rel_up": "",
    }
    values["rel_up"] = values["rel"].upper()
    values["rel_cap"] = values["rel"].capitalize()
    values.update(_clinical_values(patient, values, rng))
    return values


def _clinical_values(patient: Patient, values: dict[str, str], rng: random.Random) -> dict[str, str]:
    """The plain clinical body of a note: the patient's case (fixed per patient: every note of one patient is
    about the same admission), phrased anew for each note."""
    case = clinical.make_case(random.Random(patient.mrn))
    systems, nursing_plan = clinical.nursing(case, rng, values)
    study, indication, findings, impression = clinical.imaging(rng)
    geri_reasons, geri_findings, geri_recs = clinical.geriatrics(rng)
    return {
        "nursing_systems": systems,
        "nursing_plan": nursing_plan,
        "service": rng.choice(("MEDICINE", "CARDIOLOGY", "SURGERY", "NEUROLOGY", "HOSPITALIST")),
        "history": clinical.history(case, rng),
        "presentation": clinical.presentation(case, rng),
        "exam": clinical.exam(case, rng),
        "studies": clinical.studies(case, rng),
        "course": clinical.course(case, rng),
        "labs": clinical.labs(rng),
        "medications": clinical.medications(case, rng),
        "disposition": rng.choice(clinical.DISPOSITIONS),
        "fu_weeks": rng.choice(("1 week", "1-2 weeks", "2 weeks", "10 days", "3 weeks")),
        "plan": clinical.plan(case, rng),
        "sign_time": f"{rng.randint(7, 22):02d}:{rng.randint(0, 59):02d}",
        "study": study,
        "indication": indication,
        "comparison": rng.choice(("Prior study from", "Outside films dated", "Radiograph of", "CT of")),
        "findings": findings,
        "impression": impression,
        "unit": rng.choice(("MICU", "CCU", "SICU", "Medicine", "Step-down", "Hospitalist")),
        "subjective": clinical.presentation(case, rng),
        "tmax": f"{rng.uniform(97.8, 102.5):.1f}",
        "problem": rng.choice((case.problem.name, case.problem.short)),
        "consultant": rng.choice(("Surgery", "Cardiology", "Nephrology", "GI", "ID", "Neurology")),
        "code": rng.choice(clinical.CODE_STATUS),
        "pgy": str(rng.randint(1, 3)),
        "geri_reasons": geri_reasons,
        "geri_story": rng.choice(("3 falls", "worsening memory", "poor appetite", "two ED visits", "new confusion")),
        "geri_findings": geri_findings,
        "geri_recs": geri_recs,
        "social": clinical.social(rng, values["rel"]),
    }


def make_note(
    style: str, patient: Patient, charttime: datetime, rng: random.Random, templates: dict[str, str] | None = None
) -> tuple[str, list[dict]]:
    """One note in ``style``; spans label every PHI value.  Ages under 90 are not PHI and get no span."""
    template = (templates or STYLES)[style]
    values = note_values(patient, charttime, rng)
    text, spans = render(template, values)
    spans = [s for s in spans if not (s["label"] == "AGE" and int(text[s["start"] : s["end"]]) < 90)]
    return text, spans


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


ADDENDA = (
    "ADDENDUM: potassium rechecked before discharge and within normal limits; no change to the plan.",
    "ADDENDUM: patient seen again before leaving; questions answered, medication list reconciled.",
    "ADDENDUM: outside records received and reviewed; they do not change the assessment.",
)


def _planted_duplicates(rows: list[dict], rng: random.Random) -> list[tuple[dict, dict]]:
    """Two deliberate duplicates, so the demo shows deduplication at work: (original row, copy row).

    * an interface resend: one note again under a new note_seq, text unchanged (an exact duplicate);
    * an addendum: a longer note re-filed with a short addendum appended (a near-duplicate, about 95% of its
      words shared in order).  Its gold spans are the original's: the addendum holds no PHI.
    """
    resent, amended = rng.sample([r for r in rows if r["note_type"] in ("Discharge summary", "Progress")], 2)
    copies = []
    for row, text in ((resent, resent["text"]), (amended, amended["text"] + rng.choice(ADDENDA) + "\n")):
        seq = max(r["note_seq"] for r in rows if r["subject_id"] == row["subject_id"]) + 1
        note_id = f"{row['subject_id']}-{row['note_type'][:2].upper()}-{seq}"
        copies.append((row, {**row, "note_id": note_id, "note_seq": seq, "text": text}))
        rows = [*rows, copies[-1][1]]  # the next copy of this patient takes the following note_seq
    return copies


def note_row(patient: Patient, hadm_id: str, style: str, seq: int, charttime: datetime, text: str) -> dict:
    """One row of the notes CSV (a MIMIC-style export: note and admission ids, times, the text)."""
    return {
        "note_id": f"{patient.mrn}-{style[:2].upper()}-{seq}",
        "subject_id": patient.mrn,
        "hadm_id": hadm_id,
        "note_type": style,
        "note_seq": seq,
        "charttime": charttime.strftime("%Y-%m-%d %H:%M:%S"),
        "storetime": (charttime + timedelta(minutes=37)).strftime("%Y-%m-%d %H:%M:%S"),
        "text": text,
    }


def write(out_dir: Path, cohort: list[Patient], seed: int) -> list[str]:
    """Write ~3-4 notes per patient (plus two planted duplicates) as a CSV and a CSV.gz, a truncated .csv.gz,
    and the gold spans.

    Returns every PHI string planted in the notes.
    """
    rng = random.Random(seed + 101)
    notes_dir = out_dir / "incoming" / "notes"
    gold_dir = out_dir / "gold"
    notes_dir.mkdir(parents=True, exist_ok=True)
    gold_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    gold: list[dict] = []
    planted: set[str] = set()
    styles = list(STYLES)
    for index, patient in enumerate(cohort):
        hadm_id = str(20_000_000 + rng.randint(0, 9_999_999))
        base = datetime(2019, 1, 1, 8, 0) + timedelta(days=rng.randint(0, 700), minutes=rng.randint(0, 600))
        chosen = rng.sample(styles, 3 + index % 2)
        for seq, style in enumerate(chosen, start=1):
            charttime = base + timedelta(hours=12 * seq)
            text, spans = make_note(style, patient, charttime, rng)
            rows.append(note_row(patient, hadm_id, style, seq, charttime, text))
            gold.append({"id": rows[-1]["note_id"], "text": text, "spans": spans})
            planted.update(text[s["start"] : s["end"]] for s in spans if s["label"] not in {"AGE"})
    for row, copy in _planted_duplicates(rows, rng):
        rows.append(copy)
        spans = next(g["spans"] for g in gold if g["id"] == row["note_id"])
        gold.append({"id": copy["note_id"], "text": copy["text"], "spans": spans})
    half = len(rows) // 2
    (notes_dir / "notes_part1.csv").write_bytes(_csv_bytes(rows[:half]))
    (notes_dir / "notes_part2.csv.gz").write_bytes(gzip.compress(_csv_bytes(rows[half:]), mtime=0))
    broken = gzip.compress(_csv_bytes(rows[:2]), mtime=0)
    (notes_dir / "notes_truncated.csv.gz").write_bytes(broken[: len(broken) // 2])
    with (gold_dir / "notes_gold.jsonl").open("w", encoding="utf-8") as fh:
        for record in gold:
            fh.write(json.dumps(record) + "\n")
    return sorted(planted)

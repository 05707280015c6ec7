"""Labelled synthetic dev and test sets for the text de-identification engine.

``dev`` is for tuning: the sample-note templates (medcurate.sample.notes) with many patients.  ``test`` is for
reporting only and is never tuned on: other seeds, extra templates written separately (telephone encounter,
OR note, ED triage, social work, pathology), and a name list that mixes census names with rare and
non-English names the gazetteers do not hold, so name recall is not just gazetteer recall.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime, timedelta
from pathlib import Path

from medcurate.sample.notes import STYLES, make_note
from medcurate.sample.people import Person, make_cohort

TEST_TEMPLATES = {
    "Telephone": """\
TELEPHONE ENCOUNTER {DATE:disch_mdy} 10:15
Caller: {NAME:nok_first} {NAME:nok_last} ({REL:rel}), callback {PHONE:phone2}
Re: {NAME:pt_last}, {NAME:pt_first} (MRN# {ID:mrn})
Pt's {REL:rel} reports BP at home 168/94 and 172/98, HR 58. Taking amlodipine 10 mg daily and HCTZ 25 mg.
Denies CP, SOB, HA, vision change. Advised to check BP BID x1 wk and call back. Appt w/ Dr {NAME:pcp_last} on
{DATE:fu_text}. Routed to {NAME:att_first} {NAME:att_last} MD.
-- {NAME:nurse_first_up} {NAME:nurse_last_up}, RN
""",
    "Operative": """\
OPERATIVE REPORT   {HOSPITAL:hospital}
PATIENT: {NAME:pt_last_up}, {NAME:pt_first_up}   MR#: {ID:mrn}   DATE OF SURGERY: {DATE:exam_text}
SURGEON: {NAME:surg_last}, {NAME:att_first}   ASSISTANT: {NAME:res_first} {NAME:res_last}, PA-C
PREOPERATIVE DIAGNOSIS: Symptomatic cholelithiasis.  PROCEDURE: Laparoscopic cholecystectomy.
ANESTHESIA: GETA.  EBL: 25 mL.  FLUIDS: 1200 mL LR.  SPECIMENS: Gallbladder to pathology.
The patient was brought to the OR and placed supine. After induction of general anesthesia, the abdomen was
prepped and draped. A 12 mm Hasson trocar was placed at the umbilicus. Pneumoperitoneum to 15 mmHg. The
critical view of safety was obtained; cystic duct and artery clipped x3 and divided. Counts correct x2.
Implant: none.  Dictated {DATE:disch_iso} by {NAME:surg_last} / transcribed by {NAME:nurse_first_up}.
""",
    "ED triage": """\
ED TRIAGE  {DATE:prog_date} 02:47  Arrived via EMS from {ADDRESS:street}, {LOCATION:city}, {LOCATION:state} {ZIP:zip}
CC: "my chest hurts" x2h. {AGE:age_num}yo {sex} hx CAD s/p PCI to LAD, HLD. ESI 2.
VS: T 37.1 C, HR 112, BP 88/54, RR 24, SpO2 89% RA -> 95% NRB, FSBG 212, pain 9/10.
EKG: ST elevation V2-V4. Code STEMI activated 02:51, cath lab notified. ASA 324 mg chewed, heparin 4000 u IV.
PCP: {NAME:pcp_last} (Dr). Ins: {ID:member_id}. NOK {NAME:nok_first} {NAME:nok_last} {PHONE:phone}.
""",
    "Social work": """\
SOCIAL WORK NOTE
Met with pt {NAME:pt_first} and {REL:rel} {NAME:nok_first} at bedside on {DATE:admit_text}. Pt lives with {REL:rel}
in a 2nd floor apartment at {ADDRESS:street} in {LOCATION:city}. Former machinist, retired. Insured through
Medicare ({ID:medicare}). Discussed HCP: pt named {NAME:nok_first} {NAME:nok_last} as health care proxy.
Pt's email for portal access: {EMAIL:email}. Plan: short-term rehab at {HOSPITAL:clinic} vs home with VNA.
{NAME:geri_first} {NAME:geri_last}, LICSW  x{PHONE:pager}
""",
    "Pathology": """\
SURGICAL PATHOLOGY REPORT  Accession: {ID:accession}  Collected: {DATE:exam_text}
Patient: {NAME:pt_full}  DOB {DATE:dob_mdy}  Submitting MD: {NAME:ref_first_init} {NAME:ref_last}
SPECIMEN: Gallbladder.  GROSS: 8.2 x 3.1 x 2.5 cm gallbladder with 12 yellow-green stones, 0.3-1.1 cm.
MICROSCOPIC: Chronic cholecystitis with cholesterolosis. No dysplasia or malignancy. 0/1 lymph nodes.
DIAGNOSIS: Chronic cholecystitis and cholelithiasis.
Electronically signed out by {NAME:rad_first} {NAME:rad_last}, MD, on {DATE:disch_iso}. Lab CLIA {LICENSE:npi}
""",
}

# Names only the test set uses: rare or non-English, many absent from the gazetteers.
TEST_FIRST = (
    "Oluwaseun Thandiwe Siobhan Niamh Xiomara Dagny Ilse Bjorn Tadeusz Zbigniew Wojciech Ngoc Thuy Anh Bao "
    "Kaveh Farhad Yusuf Aylin Emeka Chidi Oksana Bogdan Radu Mihai Kenji Haruto Sakura Ines Jovana Dragan "
    "Everett Delphine Lucinda Thaddeus Cornelius Philippa Rosalind Leopold Augustin Marisol"
).split()
TEST_LAST = (
    "Okonkwo-Adeyemi Szczepanski Wojcik Nguyen-Tran Abernathy Quigley Vukovic Przybylski Achterberg Ferreira "
    "Haugland Oyelaran Castellanos Drummond Fairweather Kazmierczak Bhattacharya Venkataraman Mbeki Zielinski "
    "Papadopoulos Halvorsen Delacroix Ostrowski Thistlewood McAllister O'Rourke Lindgren Takahashi Abernethy "
    "Grzelak Vanderbilt Ashworth Huang Shapiro Goldberg Cohen Murphy Kelly Sullivan"
).split()


def _test_person(rng: random.Random) -> Person:
    return Person(rng.choice(TEST_FIRST), rng.choice(TEST_LAST), rng.choice("MF"))


def _with_test_names(patients, rng: random.Random):
    return [
        dataclasses.replace(
            p,
            person=_test_person(rng) if rng.random() < 0.6 else p.person,
            next_of_kin=_test_person(rng) if rng.random() < 0.6 else p.next_of_kin,
            attending=_test_person(rng) if rng.random() < 0.6 else p.attending,
        )
        for p in patients
    ]


def make_gold_set(split: str, n_docs: int, seed: int) -> list[dict]:
    """``n_docs`` labelled notes in the gold JSONL record shape ({"id", "text", "spans"})."""
    if split not in ("dev", "test"):
        raise ValueError("split must be 'dev' or 'test'")
    rng = random.Random(f"{split}-{seed}")
    patients = make_cohort(max(4, n_docs // 3), seed=seed + (0 if split == "dev" else 7919))
    templates = dict(STYLES)
    if split == "test":
        patients = _with_test_names(patients, rng)
        templates.update(TEST_TEMPLATES)
    records = []
    for i in range(n_docs):
        patient = patients[i % len(patients)]
        style = rng.choice(list(templates))
        charttime = datetime(2018, 1, 1) + timedelta(days=rng.randint(0, 1500), minutes=rng.randint(0, 1439))
        text, spans = make_note(style, patient, charttime, rng, templates)
        records.append({"id": f"{split}-{i:05d}", "text": text, "spans": spans})
    return records


def write_gold_set(path: Path, split: str, n_docs: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for record in make_gold_set(split, n_docs, seed):
            fh.write(json.dumps(record) + "\n")
    return path

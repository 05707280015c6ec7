"""Labelled synthetic dev and test sets for the text de-identification engine.

``dev`` is for tuning: the sample-note templates (medcurate.sample.notes) with many patients.  ``test`` is for
reporting only and is never tuned on: other seeds, extra templates written separately (telephone encounter,
OR note, ED triage, social work, pathology), and a name list that mixes census names with rare and
non-English names the gazetteers do not hold, so name recall is not just gazetteer recall.  ``dev2`` is a
second tuning set in yet other note styles (``synthetic_dev2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

from medcurate.sample.deid_dev2 import make_dev2_set
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
    """``n_docs`` labelled notes in the gold JSONL record shape ({"id", "text", "spans"}); ``clean``: no PHI;
    ``dev2``: other note styles for tuning (``synthetic_dev2``)."""
    if split == "clean":
        return make_phi_free_set(n_docs, seed)
    if split == "dev2":
        return make_dev2_set(n_docs, seed, make_cohort(max(4, n_docs // 3), seed=seed))
    if split not in ("dev", "test"):
        raise ValueError("split must be 'dev', 'dev2', 'test' or 'clean'")
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


# ---- PHI-free clinical text: every predicted span on it is a false positive ----
# Frames and fillers are clinical vocabulary only (vitals, labs, doses, abbreviations, drugs by brand and generic
# name, organisms, eponyms, section headers, coordinated drug lists, relation words without names), so the set
# measures how often the name, place and number rules fire on ordinary clinical text.
CLEAN_FRAMES = (
    "BP {sbp}/{dbp}, HR {hr}, RR {rr}, T {temp}, SpO2 {spo2}% on {o2}L NC.",
    "Na {na}, K {k}, Cl {cl}, HCO3 {hco3}, BUN {bun}, Cr {cr}, Glc {glc}. WBC {wbc}, Hgb {hgb}, Plt {plt}.",
    "{Drug} {dose} mg {route} {freq}; {drug} {dose} mg {route} {freq}.",
    "Started {Drug}, {Drug} and {Drug} for {dx}.",
    "{Drug} and {Drug} were held; {Drug} continued.",
    "{Org} {species} grew from blood cultures x{n}; sensitive to {drug}.",
    "Cultures: {Org} {Species} in urine, >100k CFU.",
    "{Eponym} sign negative. {Eponym} test positive on exam.",
    "Hx {Disease}, {dx} and {dx}. S/p {Proc} in {year}.",
    "{Section}: {finding}. {Section}: {finding}.",
    "{Rel} states pt {verb} well overnight; {rel} at bedside.",
    "Pt's {rel} reports {symptom} x{n} days.",
    "{Scale} score {score}. GCS {gcs}. Pain {pain}/10. Strength {strength}/5 in {limb}.",
    "Transfer to {Unit} for {dx}; NPO after MN for {Proc}.",
    "{Drug} {dose} mg given at {hour}:00; repeat {Lab} in {n} h.",
    "A&Ox3, PERRLA, MAE x4. {Section}: {finding}.",
    "Discussed with {Service} team, who recommend {drug} and repeat {Imaging}.",
    "{Imaging}: {finding}. Compared with prior from {n} days ago.",
    "{Drug} drip at {dose} mcg/kg/min, titrate to MAP > {map}.",
    "Given {n} units PRBC for Hgb {hgb}; {Drug} {dose} mg IV x1.",
)
CLEAN_WORDS = {
    "Drug": "Lasix Keppra Depakote Coumadin Eliquis Zosyn Vancomycin Cefepime Flagyl Levophed Precedex Norco "
    "Dilaudid Seroquel Haldol Ativan Protonix Lovenox Plavix Brilinta Entresto Jardiance Farxiga Ozempic "
    "Trulicity Humira Remicade Xarelto Tamsulosin Flomax Proscar Sinemet Aricept Namenda Lexapro Zoloft",
    "drug": "furosemide levetiracetam warfarin apixaban piperacillin ceftriaxone metronidazole norepinephrine "
    "oxycodone hydromorphone quetiapine lorazepam pantoprazole enoxaparin clopidogrel ticagrelor metoprolol "
    "amlodipine lisinopril atorvastatin glargine heparin tamsulosin donepezil sertraline",
    "Org": "Klebsiella Escherichia Staphylococcus Streptococcus Pseudomonas Enterococcus Candida Proteus "
    "Serratia Enterobacter Acinetobacter Clostridioides Haemophilus Moraxella Listeria",
    "species": "pneumoniae coli aureus epidermidis aeruginosa faecalis faecium albicans glabrata mirabilis "
    "marcescens cloacae baumannii difficile influenzae catarrhalis monocytogenes",
    "Eponym": "Murphy's Homan's Babinski Romberg Kernig's Brudzinski's Tinel's Phalen's McMurray's Lachman",
    "Disease": "Parkinson's disease;Alzheimer's dementia;Crohn's disease;Graves' disease;Hashimoto thyroiditis;"
    "Cushing syndrome;Addison disease;Wilson disease;Guillain-Barre syndrome;Charcot-Marie-Tooth disease",
    "dx": "CHF exacerbation;COPD;sepsis;UTI;AKI;DKA;afib with RVR;NSTEMI;GI bleed;PNA;cellulitis;SBO;pancreatitis",
    "Proc": "CABG;PCI;EGD;ERCP;TURP;TAVR;lap chole;PEG placement;paracentesis;thoracentesis;LP",
    "Section": "NEURO;CV;RESP;GI;GU;ID;HEME;ENDO;FEN;Dispo;Plan;Assessment;Impression;Findings;Skin;Ext",
    "finding": "no acute process;trace edema;clear to auscultation;soft, NT/ND;bilateral effusions;"
    "mild cardiomegaly;RRR, no m/r/g;warm and well perfused;no focal deficits",
    "Rel": "Wife Husband Daughter Son Mother Father Sister Brother Family",
    "rel": "wife husband daughter son mother father sister brother family caregiver",
    "verb": "slept ate did ambulated",
    "symptom": "nausea;chest pain;dyspnea;dizziness;cough;fevers;diarrhea",
    "Scale": "Braden Morse CIWA RASS NIHSS Wells CURB-65 MELD",
    "limb": "all extremities;RUE;LLE;bilateral lower extremities",
    "Unit": "CCU;MICU;SICU;PACU;5 North;Step-down;Rehab",
    "Service": "Cardiology;Nephrology;ID;GI;Surgery;Palliative Care;Neurology",
    "Imaging": "CXR;CT head;CTA chest;MRI brain;TTE;RUQ US;KUB",
    "Lab": "lactate;troponin;K;Mg;INR;CBC;BMP",
    "route": "PO IV SC IM PR",
    "freq": "daily BID q6h q8h qHS prn",
}
CLEAN_NUMBERS = {
    "sbp": (90, 180),
    "dbp": (50, 100),
    "hr": (50, 130),
    "rr": (12, 30),
    "spo2": (88, 100),
    "o2": (1, 6),
    "na": (128, 148),
    "k": (3, 6),
    "cl": (95, 110),
    "hco3": (16, 30),
    "bun": (8, 60),
    "glc": (70, 300),
    "plt": (50, 400),
    "dose": (5, 500),
    "n": (1, 5),
    "score": (1, 25),
    "gcs": (3, 15),
    "pain": (0, 10),
    "strength": (0, 5),
    "map": (60, 70),
    "year": (1990, 2020),
    "hour": (0, 23),
}
CLEAN_DECIMALS = {"temp": (36.0, 39.5), "cr": (0.6, 4.0), "wbc": (2.0, 20.0), "hgb": (6.0, 15.0)}
FIELD = re.compile(r"\{(\w+)\}")


def _clean_value(rng: random.Random, key: str) -> str:
    if key == "Species":
        return _clean_value(rng, "species").capitalize()
    if key in CLEAN_WORDS:
        raw = CLEAN_WORDS[key]
        return rng.choice(raw.split(";") if ";" in raw else raw.split())
    if key in CLEAN_NUMBERS:
        return str(rng.randint(*CLEAN_NUMBERS[key]))
    return f"{rng.uniform(*CLEAN_DECIMALS[key]):.1f}"


def make_phi_free_set(n_docs: int, seed: int) -> list[dict]:
    """``n_docs`` clinical notes with no PHI at all (gold records with no spans), in Title, upper and lower case."""
    rng = random.Random(f"clean-{seed}")
    records = []
    for i in range(n_docs):
        lines = [
            FIELD.sub(lambda m: _clean_value(rng, m.group(1)), rng.choice(CLEAN_FRAMES))
            for _ in range(rng.randint(6, 12))
        ]
        case = rng.choice((str, str, str, str.upper, str.lower))
        records.append({"id": f"clean-{i:05d}", "text": case("\n".join(lines) + "\n"), "spans": []})
    return records


def main(argv: list[str] | None = None) -> int:
    """Developer entry point: ``python -m medcurate.sample.deid_gold {dev,dev2,test,clean} OUT [--n N] [--seed S]``
    writes a labelled synthetic set in the format ``medcurate deid-eval`` scores."""
    parser = argparse.ArgumentParser(prog="python -m medcurate.sample.deid_gold", description=main.__doc__)
    parser.add_argument("split", choices=("dev", "dev2", "test", "clean"), help="which synthetic set to write")
    parser.add_argument("out", help="the JSONL file to write")
    parser.add_argument("--n", type=int, default=300, help="number of notes (default 300)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args(argv)
    print(write_gold_set(Path(args.out), args.split, args.n, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

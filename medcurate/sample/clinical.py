"""The clinical content of a synthetic note: one patient's problem, history, findings, treatment and plan.

Notes of different patients must read as different documents (as real ones do), not as one template with other
names: near-duplicate detection drops documents that share 80% of their words in order, and a templated sample
would lose most of its notes to it.  So each patient gets a ``Case`` (a main problem and comorbidities drawn
from pools, fixed per patient so that all notes of one stay consistent) and every note phrases it anew: sections
are picked from sentence variants, optional findings come and go, lists are shuffled and values are drawn per
note.  Nothing here is PHI, and no word of the pools is a name, a city or a street of ``people.py`` (a test
checks it): a planted identifier found in the output must be a real leak, not a clinical word.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A reason for admission: how it presents, what the exam and studies show, how it is treated."""

    name: str
    short: str
    symptoms: tuple[str, ...]
    findings: tuple[str, ...]
    studies: tuple[str, ...]
    treatments: tuple[str, ...]
    meds: tuple[str, ...]
    plans: tuple[str, ...]


PROBLEMS = (
    Problem(
        "acute on chronic systolic heart failure", "CHF exacerbation",
        ("worsening dyspnea on exertion", "three-pillow orthopnea", "leg swelling", "a 4 kg weight gain",
         "paroxysmal nocturnal dyspnea"),
        ("JVP elevated to the angle of the jaw", "bibasilar crackles", "2+ pitting edema to the knees", "an S3"),
        ("BNP {bnp}", "CXR with bilateral effusions and vascular congestion", "TTE with EF {ef}%"),
        ("diuresed with furosemide {furo} mg IV twice daily, net negative {liters} L",
         "transitioned to oral torsemide once euvolemic", "afterload reduction uptitrated"),
        ("torsemide 20 mg PO daily", "metoprolol succinate 50 mg daily", "spironolactone 25 mg daily"),
        ("daily weights, call if up more than 1 kg in a day", "2 g sodium diet", "heart failure clinic in 1 week"),
    ),
    Problem(
        "community-acquired pneumonia", "CAP",
        ("productive cough", "fevers to {tmax} F", "pleuritic chest pain", "rigors", "shortness of breath"),
        ("crackles over the right lower lobe", "egophony at the right base", "dullness to percussion on the left"),
        ("CXR with a right lower lobe consolidation", "procalcitonin {procal}", "sputum gram stain with GPCs"),
        ("ceftriaxone and azithromycin started in the ED", "weaned from oxygen to room air",
         "narrowed to amoxicillin once afebrile"),
        ("amoxicillin-clavulanate 875 mg PO BID to complete 5 days",),
        ("repeat CXR in 6 weeks to document resolution", "incentive spirometry", "return for fever or dyspnea"),
    ),
    Problem(
        "diabetic ketoacidosis", "DKA",
        ("polyuria and polydipsia", "nausea and vomiting", "diffuse abdominal pain", "missed insulin doses"),
        ("dry mucous membranes", "Kussmaul respirations", "fruity breath", "tachycardia"),
        ("anion gap {gap}", "glucose {glc}", "beta-hydroxybutyrate {bhb}", "venous pH {ph}"),
        ("insulin drip per protocol until the gap closed", "aggressive IV fluids with potassium repletion",
         "bridged to basal-bolus insulin"),
        ("insulin glargine 22 units SC nightly", "insulin lispro sliding scale with meals"),
        ("diabetes educator visit before discharge", "endocrine clinic in 2 weeks", "sick-day rules reviewed"),
    ),
    Problem(
        "acute cholecystitis", "cholecystitis",
        ("right upper quadrant pain after fatty meals", "nausea", "subjective fevers", "anorexia"),
        ("RUQ tenderness with guarding", "a positive sonographic tenderness over the gallbladder",
         "no jaundice"),
        ("RUQ US with gallbladder wall thickening and pericholecystic fluid", "WBC {wbc}", "lipase {lipase}"),
        ("started on piperacillin-tazobactam", "laparoscopic cholecystectomy on hospital day 2",
         "diet advanced after surgery"),
        ("oxycodone 5 mg q6h prn for 3 days", "docusate 100 mg BID"),
        ("surgery clinic in 2 weeks", "no lifting over 10 pounds for 4 weeks", "wound check"),
    ),
    Problem(
        "upper GI bleed from a duodenal ulcer", "UGIB",
        ("melena for two days", "coffee-ground emesis", "lightheadedness on standing", "fatigue"),
        ("pale conjunctivae", "epigastric tenderness", "orthostatic hypotension", "melena on rectal exam"),
        ("Hgb {hgb} from a baseline of 13", "BUN {bun}", "EGD with a clean-based duodenal ulcer"),
        ("transfused 2 units PRBC", "pantoprazole drip for 72 hours", "H. pylori serology sent"),
        ("pantoprazole 40 mg PO BID for 8 weeks",),
        ("avoid NSAIDs", "repeat CBC in 1 week", "GI clinic to review H. pylori results"),
    ),
    Problem(
        "atrial fibrillation with rapid ventricular response", "AF with RVR",
        ("palpitations", "racing heartbeat since the morning", "dyspnea", "presyncope"),
        ("irregularly irregular rhythm", "no murmur", "mild bibasilar crackles"),
        ("ECG with AF at {hr_af} bpm", "TSH {tsh}", "TTE with a mildly dilated left atrium"),
        ("rate controlled with IV diltiazem then oral metoprolol", "anticoagulation started after shared decision",
         "CHA2DS2-VASc score of {chads}"),
        ("metoprolol tartrate 50 mg PO BID", "apixaban 5 mg PO BID"),
        ("cardiology clinic in 4 weeks", "Holter monitor", "bleeding precautions reviewed"),
    ),
    Problem(
        "acute kidney injury", "AKI",
        ("decreased urine output", "poor oral intake", "dizziness", "generalized weakness"),
        ("dry mucous membranes", "flat neck veins", "no edema"),
        ("Cr {cr} from a baseline of 0.9", "FeNa under 1%", "renal US without hydronephrosis"),
        ("IV fluids with improvement in creatinine", "nephrotoxins held", "ACE inhibitor held"),
        ("lisinopril held until renal follow-up",),
        ("BMP in 3 days", "nephrology clinic if creatinine does not return to baseline", "hydrate well"),
    ),
    Problem(
        "COPD exacerbation", "AECOPD",
        ("increased sputum purulence", "wheezing", "dyspnea at rest", "cough worse at night"),
        ("diffuse expiratory wheezes", "prolonged expiratory phase", "accessory muscle use", "pursed-lip breathing"),
        ("VBG pH {ph} pCO2 {pco2}", "CXR hyperinflated without infiltrate", "viral panel negative"),
        ("prednisone 40 mg daily for 5 days", "nebulized albuterol and ipratropium", "doxycycline started"),
        ("tiotropium 18 mcg inhaled daily", "albuterol inhaler prn", "prednisone 40 mg daily to finish 5 days"),
        ("pulmonary rehab referral", "smoking cessation counseling", "pulmonology clinic in 6 weeks"),
    ),
    Problem(
        "cellulitis of the left leg", "LLE cellulitis",
        ("spreading redness of the left shin", "pain and warmth of the leg", "low-grade fevers", "a scratch"),
        ("erythema with a demarcated border", "warmth and tenderness of the left shin", "tinea between the toes"),
        ("WBC {wbc}", "lower extremity duplex negative for DVT", "blood cultures with no growth"),
        ("cefazolin IV with a marked border", "leg elevated", "switched to oral cephalexin"),
        ("cephalexin 500 mg PO QID for 5 more days", "terbinafine cream to the toes"),
        ("keep the leg elevated", "return if redness spreads past the border", "PCP visit in 1 week"),
    ),
    Problem(
        "small bowel obstruction", "SBO",
        ("crampy abdominal pain", "bilious vomiting", "no flatus for a day", "abdominal distension"),
        ("a distended tympanic abdomen", "high-pitched bowel sounds", "a well-healed midline scar"),
        ("CT abdomen with a transition point in the mid ileum", "lactate {lactate}", "K {k}"),
        ("NG tube to suction", "made NPO with IV fluids", "gastrografin challenge with contrast in the colon"),
        ("no new medications",),
        ("advance diet as tolerated", "surgery clinic in 2 weeks", "return for vomiting or no flatus"),
    ),
    Problem(
        "acute ischemic stroke", "CVA",
        ("sudden right-sided weakness", "slurred speech", "facial droop noticed by family", "trouble finding words"),
        ("right pronator drift", "right lower facial weakness", "expressive aphasia", "NIHSS {nihss}"),
        ("CT head without hemorrhage", "CTA with a left M2 occlusion", "MRI with a left frontal infarct"),
        ("thrombolysis given within the window", "permissive hypertension for 24 hours", "swallow evaluation passed"),
        ("aspirin 81 mg daily", "atorvastatin 80 mg nightly"),
        ("inpatient rehabilitation", "stroke clinic in 6 weeks", "blood pressure goal under 130"),
    ),
    Problem(
        "urosepsis from pyelonephritis", "urosepsis",
        ("dysuria", "flank pain", "fevers and chills", "confusion noted at home"),
        ("costovertebral angle tenderness", "warm extremities", "tachycardia"),
        ("UA with pyuria", "lactate {lactate}", "urine culture with pan-sensitive E. coli"),
        ("30 mL/kg fluid bolus", "ceftriaxone then oral ciprofloxacin", "briefly on low-dose norepinephrine"),
        ("ciprofloxacin 500 mg PO BID to complete 10 days",),
        ("repeat UA only if symptomatic", "PCP visit in 1 week", "return for fever"),
    ),
    Problem(
        "alcohol withdrawal", "EtOH withdrawal",
        ("tremor", "sweating", "anxiety", "visual hallucinations the night before", "last drink two days ago"),
        ("coarse tremor", "diaphoresis", "tachycardia", "no asterixis"),
        ("CIWA {ciwa}", "AST {ast}, ALT {alt}", "Mg {mg}"),
        ("symptom-triggered lorazepam per CIWA", "thiamine and folate repleted", "addiction consult"),
        ("thiamine 100 mg daily", "folic acid 1 mg daily", "naltrexone 50 mg daily"),
        ("outpatient addiction program", "AA meetings", "PCP visit to recheck liver tests"),
    ),
    Problem(
        "hip fracture after a fall", "R hip fx",
        ("a mechanical fall at home", "right hip pain", "inability to bear weight"),
        ("a shortened externally rotated right leg", "pain with any hip motion", "intact distal pulses"),
        ("hip X-ray with a right femoral neck fracture", "Hgb {hgb}", "vitamin D {vitd}"),
        ("hemiarthroplasty on hospital day 1", "PT for gait training", "enoxaparin for DVT prophylaxis"),
        ("enoxaparin 40 mg SC daily for 4 weeks", "acetaminophen 1 g q8h", "vitamin D3 2000 IU daily"),
        ("orthopedics clinic in 2 weeks", "home safety evaluation", "DEXA scan"),
    ),
)  # fmt: skip

# Background conditions: (how a history lists it, a home medication for it).
COMORBIDITIES = (
    ("hypertension", "amlodipine 10 mg daily"),
    ("type 2 diabetes", "metformin 1000 mg BID"),
    ("hyperlipidemia", "atorvastatin 40 mg nightly"),
    ("CKD stage 3", "sodium bicarbonate 650 mg BID"),
    ("hypothyroidism", "levothyroxine 75 mcg daily"),
    ("GERD", "omeprazole 20 mg daily"),
    ("depression", "sertraline 100 mg daily"),
    ("osteoarthritis", "acetaminophen 650 mg q6h prn"),
    ("BPH", "tamsulosin 0.4 mg nightly"),
    ("gout", "allopurinol 300 mg daily"),
    ("obstructive sleep apnea on CPAP", "CPAP nightly"),
    ("prior DVT", "no anticoagulation since 2015"),
    ("asthma", "fluticasone inhaler BID"),
    ("anemia of chronic disease", "ferrous sulfate 325 mg daily"),
    ("peripheral neuropathy", "gabapentin 300 mg TID"),
    ("glaucoma", "latanoprost eye drops nightly"),
    ("migraine", "sumatriptan prn"),
    ("coronary artery disease with a prior stent", "aspirin 81 mg daily"),
)
GENERAL_EXAM = (
    "alert and oriented x3", "in no acute distress", "uncomfortable appearing", "pleasant and conversant",
    "lungs clear to auscultation", "regular rate and rhythm", "abdomen soft and nontender", "no focal deficits",
    "warm and well perfused", "mucous membranes moist", "no rash", "strength 5/5 throughout",
)  # fmt: skip
SOCIAL = (
    "lives with {rel} in a single-level home", "lives alone and drives", "retired teacher, never smoker",
    "former smoker, quit 10 years ago", "drinks socially", "works in construction", "walks with a cane",
    "independent in all ADLs", "uses a walker outdoors", "active 30 pack-year smoker",
)  # fmt: skip
CODE_STATUS = ("Full code", "DNR/DNI confirmed with patient", "Full code, HCP on file", "DNR, OK to intubate")
DISPOSITIONS = ("home with services", "home", "skilled nursing facility", "acute rehab", "home with family support")
IMAGING_STUDIES = (
    ("CHEST (PA AND LAT)", ("fever and cough", "dyspnea", "hypoxia", "chest pain", "pre-op evaluation")),
    ("CHEST (PORTABLE AP)", ("line placement", "respiratory distress", "ETT position", "fever")),
    ("CT HEAD W/O CONTRAST", ("fall", "headache", "altered mental status", "new weakness")),
    ("CT ABDOMEN/PELVIS WITH CONTRAST", ("abdominal pain", "vomiting", "fever", "weight loss")),
    ("RUQ ULTRASOUND", ("abnormal liver tests", "RUQ pain", "jaundice")),
    ("LOWER EXTREMITY VENOUS DUPLEX", ("leg swelling", "calf pain", "rule out DVT")),
)
# Per region: (incidental or normal findings, of which some are reported; abnormal findings, of which at most
# one is).  No incidental finding denies an abnormal one, so a report never contradicts itself.
IMAGING_FINDINGS = {
    "CHEST": (
        ("Heart size is normal.", "Mediastinal contours are within normal limits.", "No pneumothorax.",
         "Degenerative changes of the thoracic spine.", "No acute osseous abnormality.", "Lung volumes are low.",
         "Calcified granuloma in the left upper lobe, unchanged.", "Aortic knob calcification.",
         "Healed right rib fractures.", "Surgical clips in the right upper quadrant."),
        ("There is a right lower lobe opacity.", "Small bilateral pleural effusions.",
         "Pulmonary vascular congestion.", "A {mm} mm nodule in the RUL.", "Mild bibasilar atelectasis.",
         "Interval placement of a right IJ catheter, tip at the cavoatrial junction."),
    ),
    "CT HEAD": (
        ("No mass effect or midline shift.", "Chronic small vessel ischemic change.",
         "The ventricles are normal in size.", "Mucosal thickening of the maxillary sinuses.",
         "The mastoid air cells are clear."),
        ("Old lacunar infarct in the left basal ganglia.", "A {mm} mm left frontal scalp hematoma.",
         "Loss of gray-white differentiation in the left frontal lobe."),
    ),
    "CT ABDOMEN": (
        ("Colonic diverticulosis without diverticulitis.", "Simple renal cysts.", "No free air.",
         "Fat-containing umbilical hernia.", "The appendix is normal.", "Atherosclerotic calcification of the aorta."),
        ("Dilated small bowel loops with a transition point.", "Stranding around the pancreatic head.",
         "A {mm} mm obstructing stone in the left ureter."),
    ),
    "RUQ": (
        ("The common bile duct measures {mm} mm.", "No intrahepatic ductal dilation.", "The pancreas is obscured.",
         "The right kidney is normal in size."),
        ("Cholelithiasis without wall thickening.", "Echogenic liver consistent with steatosis.",
         "Gallbladder wall thickening with pericholecystic fluid."),
    ),
    "LOWER": (
        ("Normal compressibility of the femoral veins.", "Normal flow in the common femoral vein.",
         "Subcutaneous edema of the calf."),
        ("Occlusive thrombus in the popliteal vein.", "A {mm} cm popliteal cyst."),
    ),
}  # fmt: skip
IMPRESSIONS = (  # (when nothing abnormal is reported, when something is)
    ("No acute process.", "No acute cardiopulmonary or intracranial process.", "Normal study.",
     "No acute findings; incidental findings as above."),
    ("Findings as above.", "Recommend clinical correlation.", "Recommend follow-up imaging in 3 months.",
     "Findings discussed with the ordering team."),
)  # fmt: skip
GERI_REASONS = ("falls", "delirium", "weight loss", "polypharmacy", "memory loss", "failure to thrive")
GERI_RECS = (
    "PT/OT", "delirium precautions", "Beers list review", "stop diphenhydramine", "taper oxycodone",
    "vitamin D 50,000 IU weekly x8", "hearing aids at bedside", "sleep hygiene, no benzodiazepines",
    "home safety evaluation", "nutrition consult", "bowel regimen", "orthostatic vitals daily",
)  # fmt: skip
GERI_FINDINGS = (
    "MMSE {mmse}/30", "MoCA {moca}/30", "gait unsteady, uses a walker", "orthostatic from {sbp} to {sbp2} standing",
    "hearing impaired", "Timed Up and Go {tug} seconds", "CAM positive for inattention", "weight down {kg} kg",
)  # fmt: skip
VALUES = {
    "bnp": (300, 4000), "ef": (15, 40), "furo": (40, 120), "liters": (2, 9), "tmax": (100, 104),
    "gap": (18, 32), "glc": (280, 780), "wbc": (11, 24), "lipase": (20, 90), "hgb": (6, 9), "bun": (30, 70),
    "hr_af": (120, 170), "chads": (2, 6), "cr": (2, 5), "pco2": (45, 70), "lactate": (2, 6), "k": (3, 5),
    "nihss": (3, 16), "ciwa": (10, 25), "ast": (60, 300), "alt": (30, 200), "mg": (1, 2), "vitd": (8, 30),
    "mm": (3, 9), "mmse": (15, 29), "moca": (12, 27), "sbp": (130, 170), "sbp2": (90, 120), "tug": (14, 30),
    "kg": (3, 9), "procal": (1, 9), "bhb": (3, 9), "ph": (7.1, 7.35), "tsh": (1, 4),
}  # fmt: skip
NURSING_SYSTEMS = {
    "NEURO": ("A&OX3", "ALERT, ORIENTED X2, REORIENTS EASILY", "PERRLA", "MAE", "GCS 15", "DENIES PAIN",
              "PAIN {pain}/10, PRN GIVEN WITH RELIEF", "SLEPT IN SHORT INTERVALS", "FOLLOWS COMMANDS"),
    "CV": ("HR {hr} {rhythm}", "BP {sbp}/{dbp}", "NO EDEMA", "1+ EDEMA BLE", "PULSES PALPABLE X4",
           "K {k}, REPLETED PER SLIDING SCALE", "TELE WITHOUT EVENTS"),
    "RESP": ("LS CLEAR", "LS DIMINISHED AT BASES", "SCATTERED EXP WHEEZES", "SPO2 {spo2}% ON {o2}", "RR {rr}",
             "IS TO 1000CC", "NONPRODUCTIVE COUGH", "O2 WEANED AS TOLERATED"),
    "GI/GU": ("TOLERATING DIET", "NPO AFTER MN", "BS+ X4", "VOIDING QS", "FOLEY DRAINING CLEAR YELLOW URINE",
              "LAST BM TODAY", "NO BM X2 DAYS, SENNA GIVEN", "UO 40-60CC/HR"),
    "SKIN": ("INTACT", "STAGE 1 SACRUM, TURNED Q2H", "IV SITE CLEAN AND DRY", "INCISION C/D/I"),
    "ACTIVITY": ("OOB TO CHAIR", "AMBULATED IN HALL WITH PT", "BEDREST", "ASSIST X1 WITH WALKER"),
}  # fmt: skip
RHYTHMS = ("NSR", "SR", "SINUS TACH", "AFIB", "SB")
OXYGEN = ("RA", "2L NC", "3L NC", "4L NC", "40% VENTIMASK")


@dataclass(frozen=True)
class Case:
    """One patient's clinical picture, shared by all of that patient's notes."""

    problem: Problem
    comorbidities: tuple[tuple[str, str], ...]


def make_case(rng: random.Random) -> Case:
    return Case(rng.choice(PROBLEMS), tuple(rng.sample(COMORBIDITIES, rng.randint(1, 4))))


def _fill(text: str, rng: random.Random) -> str:
    """Draw a value for every ``{key}`` of ``VALUES`` in ``text``: a decimal where a whole number would be odd."""
    for key, (low, high) in VALUES.items():
        while "{" + key + "}" in text:
            value = f"{rng.uniform(low, high):.1f}" if high - low < 6 else str(rng.randint(low, high))
            text = text.replace("{" + key + "}", value, 1)
    return text


def _some(pool: tuple[str, ...], rng: random.Random, low: int, high: int) -> list[str]:
    return rng.sample(pool, min(len(pool), rng.randint(low, high)))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def history(case: Case, rng: random.Random) -> str:
    """The comorbidities as a history line ("HTN, gout and ..."), in a per-note order."""
    return _join(rng.sample([c for c, _ in case.comorbidities], len(case.comorbidities)))


def presentation(case: Case, rng: random.Random) -> str:
    symptoms = _some(case.problem.symptoms, rng, 2, 4)
    days = rng.choice(("x{n} days", "for {n} days", "since yesterday", "over the past week", "for {n} weeks"))
    return _fill(f"{_join(symptoms)} {days}".replace("{n}", str(rng.randint(2, 6))), rng)


def exam(case: Case, rng: random.Random) -> str:
    findings = _some(GENERAL_EXAM, rng, 2, 4) + _some(case.problem.findings, rng, 1, 3)
    rng.shuffle(findings)
    return _fill("; ".join(findings), rng)


def studies(case: Case, rng: random.Random) -> str:
    return _fill(". ".join(_capital(s) for s in _some(case.problem.studies, rng, 1, 3)) + ".", rng)


def course(case: Case, rng: random.Random) -> str:
    """A numbered hospital course: the main problem, then some of the comorbidities."""
    steps = _some(case.problem.treatments, rng, 2, 3)
    lines = [f"1. {_capital(case.problem.name)}: " + "; ".join(steps) + "."]
    verbs = ("stable, home medication continued", "at baseline", "monitored, no changes", "held on admission, resumed")
    for n, (condition, _) in enumerate(_some(case.comorbidities, rng, 1, 3), start=2):
        lines.append(f"{n}. {_capital(condition)}: {rng.choice(verbs)}.")
    return _fill("\n".join(lines), rng)


def medications(case: Case, rng: random.Random) -> str:
    meds = list(case.problem.meds) + [m for _, m in case.comorbidities]
    rng.shuffle(meds)
    return ", ".join(meds)


def plan(case: Case, rng: random.Random) -> str:
    items = _some(case.problem.plans, rng, 1, 3)
    return _capital(_fill("; ".join(items), rng))


def social(rng: random.Random, relation: str) -> str:
    return "; ".join(_some(SOCIAL, rng, 1, 2)).replace("{rel}", relation)


def labs(rng: random.Random) -> str:
    """A lab line: a random subset of a chemistry and blood count panel, with values drawn per note."""
    ranges = {
        "Na": (128, 146, 0), "K": (3.1, 5.4, 1), "Cl": (94, 110, 0), "HCO3": (16, 30, 0), "BUN": (8, 60, 0),
        "Cr": (0.6, 3.2, 1), "Glc": (70, 320, 0), "WBC": (3.5, 19.0, 1), "Hgb": (7.0, 15.5, 1), "Plt": (90, 420, 0),
        "INR": (0.9, 2.8, 1), "Mg": (1.4, 2.6, 1), "Phos": (2.0, 5.1, 1), "Alb": (2.4, 4.6, 1),
    }  # fmt: skip
    chosen = rng.sample(list(ranges), rng.randint(5, 11))
    return ", ".join(f"{name} {rng.uniform(lo, hi):.{digits}f}" for name, (lo, hi, digits) in ranges.items()
                     if name in chosen)  # fmt: skip


def imaging(rng: random.Random) -> tuple[str, str, str, str]:
    """(study, indication, findings, impression) of one radiology report."""
    study, indications = rng.choice(IMAGING_STUDIES)
    region = next(k for k in IMAGING_FINDINGS if study.startswith(k))
    incidental, abnormal = IMAGING_FINDINGS[region]
    found = _some(abnormal, rng, 0, 1)
    findings = _some(incidental, rng, 2, 4) + found
    rng.shuffle(findings)
    return study, rng.choice(indications), _fill(" ".join(findings), rng), rng.choice(IMPRESSIONS[bool(found)])


def geriatrics(rng: random.Random) -> tuple[str, str, str]:
    """(reasons, findings, recommendations) of a geriatrics consult."""
    reasons = _join(_some(GERI_REASONS, rng, 1, 3))
    findings = ". ".join(_capital(f) for f in _some(GERI_FINDINGS, rng, 2, 4))
    return reasons, _fill(findings, rng) + ".", ", ".join(_some(GERI_RECS, rng, 3, 6))


def nursing(case: Case, rng: random.Random, vitals: dict[str, str]) -> tuple[str, str]:
    """(system-by-system lines, plan) of an ALL-CAPS nursing note; systems in a per-note order and subset."""
    systems = rng.sample(list(NURSING_SYSTEMS), rng.randint(4, len(NURSING_SYSTEMS)))
    values = {**vitals, "rhythm": rng.choice(RHYTHMS), "o2": rng.choice(OXYGEN)}
    lines = [f"{name}: " + ", ".join(_some(NURSING_SYSTEMS[name], rng, 2, 4)).format_map(values) + "."
             for name in systems]  # fmt: skip
    lines.insert(rng.randint(0, len(lines)), f"{case.problem.short}: {rng.choice(case.problem.treatments)}.")
    plan_items = _some(case.problem.plans, rng, 1, 2) + _some(case.problem.meds, rng, 1, 2)
    return _fill("\n".join(lines), rng).upper(), _fill("; ".join(plan_items), rng).upper()


def vocabulary() -> set[str]:
    """Every word the pools can write (lower case): what the name-collision test checks."""
    texts: list[str] = []
    for p in PROBLEMS:
        texts += [p.name, p.short, *p.symptoms, *p.findings, *p.studies, *p.treatments, *p.meds, *p.plans]
    texts += [t for pair in COMORBIDITIES for t in pair]
    texts += [*GENERAL_EXAM, *SOCIAL, *CODE_STATUS, *DISPOSITIONS, *IMPRESSIONS[0], *IMPRESSIONS[1]]
    texts += [s for s, _ in IMAGING_STUDIES] + [i for _, ind in IMAGING_STUDIES for i in ind]
    texts += [f for pools in IMAGING_FINDINGS.values() for pool in pools for f in pool]
    texts += [*GERI_REASONS, *GERI_RECS, *GERI_FINDINGS, *RHYTHMS, *OXYGEN]
    texts += [t for pool in NURSING_SYSTEMS.values() for t in pool]
    return {w.strip(".,;:()/'").lower() for t in texts for w in t.replace("-", " ").split()}

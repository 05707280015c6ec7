"""``dev2``: a second tuning set in note styles neither ``dev`` nor ``test`` uses, for generality.

``dev`` is learnt (recall 1.000), so it says nothing more about notes written differently.  These styles put the
PHI where real US notes put it and the sample templates do not: places in prose ("moved here from Tulsa last
spring", "lives with daughter in Oak Park"), outside hospitals, nursing homes, home-care agencies and pharmacies
by name, counties, states next to cities, single-word names with little context ("Spoke with Tamika", "per
Hernandez"), nicknames, initials, credentials in signatures, and whole notes in lower case or capitals.  Spans are
recorded by the sample renderer (``medcurate.sample.notes.render``), so the gold is exact by construction; the
names are the sample's census lists and the places real US towns (public gazetteer names, no patient data).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from medcurate.sample.notes import note_values, render
from medcurate.sample.people import Patient, make_person

ED_PROVIDER = """\
ED Provider Note    {DATE:date_mdy2} {sign_time}
Pt: {NAME:pt_last_up}, {NAME:pt_first_up}    MRN {ID:mrn}
CC: {problem}
HPI: {AGE:age_num} yo {sex_word} BIBA from home in {LOCATION:town} with {problem}. History from pt and \
{REL:rel} {NAME:nok_first}, who drove down from {LOCATION:town2}. Pt moved here from {LOCATION:prior_city} \
last {season}. Seen {when} at {HOSPITAL:osh} in {LOCATION:osh_city}, {LOCATION:osh_state_full} for the same.
PCP: {NAME:pcp_init} {NAME:pcp_last}, {HOSPITAL:clinic}
Exam: {exam}.
MDM: {plan}. Discussed with {NAME:cons_last} ({consultant}), agrees with admission. Updated {NAME:nok_first} \
by phone {PHONE:phone}.
{NAME:ed_first} {NAME:ed_last}, {cred}
Emergency Medicine
"""

CASE_MANAGEMENT = """\
Case Management / Social Work Progress Note
Date of service: {DATE:svc_text}
Met with pt at bedside; prefers to be called {NAME:nick}. Pt lives with {REL:rel} in {LOCATION:town}, \
{LOCATION:county}, second-floor apartment at {ADDRESS:street}, {LOCATION:city} {ZIP:zip}; 14 stairs, no \
elevator. Works nights at a warehouse on {ADDRESS:route}. Insurance verified.
Spoke with {NAME:nok_first} ({REL:rel}) at {PHONE:phone}; she can provide transport on discharge day. Referral \
faxed to {HOSPITAL:snf} (fax {PHONE:fax}); spoke with {NAME:liaison_first} in admissions, bed likely \
{DATE:fu_text}. Meals on Wheels referral placed. Per {NAME:cm_last}, PT recs reviewed.
Preferred pharmacy: {HOSPITAL:pharmacy}, {LOCATION:town}.
Plan: {disposition}. SW to follow.
{NAME:sw_first} {NAME:sw_last}, {sw_cred}
"""

PSYCHIATRY = """\
PSYCHIATRY C/L CONSULT    {DATE:exam_text}
ID: {NAME:pt_first} "{NAME:nick}" {NAME:pt_last} is a {AGE:age_num} y/o {sex_word}, referred by Dr. \
{NAME:att_last} for low mood.
Collateral: {REL:rel} {NAME:nok_first} {NAME:nok_last} ({PHONE:phone}) reports two weeks of poor sleep. \
Therapist {NAME:ther_first} at {HOSPITAL:clinic} confirms. Prior admission at {HOSPITAL:psych} in \
{DATE:month_only}.
Social: grew up in {LOCATION:birth_city}, {LOCATION:birth_state}; moved to {LOCATION:town} after divorce. \
Lives alone near {LOCATION:town2}. Pt says "{quote_rel} {NAME:nok_first_low} is the only one who checks on me."
MSE: {mse}.
Assessment: {plan}. Safety plan reviewed with pt and {NAME:nok_first}.
{NAME:psy_first} {NAME:psy_last}, MD | Psychiatry | pager {PHONE:pager}
"""

DISCHARGE_INSTRUCTIONS = """\
DISCHARGE INSTRUCTIONS
Patient: {NAME:pt_first} {NAME:pt_last}    Date: {DATE:disch_mdy}
You were cared for at {HOSPITAL:hospital} for {problem}. Your doctor was Dr. {NAME:att_last}.
Medicines: {medications}. Prescriptions were sent to {HOSPITAL:pharmacy} on {ADDRESS:street_name} in \
{LOCATION:town}.
Follow up with {NAME:pcp_first} {NAME:pcp_last}, {cred} at {HOSPITAL:clinic}, {ADDRESS:street2}, \
{LOCATION:town} {ZIP:zip2} {DATE:fu_text}. Call {PHONE:phone2} to confirm.
Home health: {HOSPITAL:home_health} will call you; your nurse will be {NAME:hh_first}.
Return to the ER if {warning}.
"""

TRANSFER = """\
OUTSIDE HOSPITAL TRANSFER SUMMARY
TRANSFERRED FROM {HOSPITAL:osh_up}, {LOCATION:osh_city_up} {LOCATION:osh_state} ON {DATE:admit_mdy}
REFERRING: {NAME:ref_first_up} {NAME:ref_last_up}, {cred}. ACCEPTING: DR {NAME:att_last_up}
PT IS A {AGE:age_num} YO {sex_up} FROM {LOCATION:town_up} WITH {history_up}.
OSH COURSE: {course_up}
TRANSPORT: {transport} FROM {LOCATION:osh_city_up}. {REL:rel_up} {NAME:nok_first_up} FOLLOWING BY CAR, CELL \
{PHONE:phone}.
RECORDS FAXED BY {NAME:unit_clerk_up} ({PHONE:fax}).
"""

SNF = """\
Skilled Nursing Note - {HOSPITAL:snf}, {LOCATION:town}
Resident: {NAME:pt_last}, {NAME:pt_init}.   Rm {room}   DOB {DATE:dob_mdy}
Resident alert, pleasant. {nursing_systems}
{REL:rel_cap} {NAME:nok_first} called at {sign_time}, updated. Resident to see Dr {NAME:pcp_last} at \
{HOSPITAL:clinic} {DATE:fu_text}; transport by {transport_co}. Per {NAME:don_last} (DON), family to bring \
shoes. Originally from {LOCATION:birth_city}; {REL:rel} lives in {LOCATION:county}.
{NAME:nurse_first} {NAME:nurse_init}., LPN
"""

STYLES: dict[str, str] = {
    "ED provider": ED_PROVIDER,
    "Case management": CASE_MANAGEMENT,
    "Psychiatry": PSYCHIATRY,
    "Discharge instructions": DISCHARGE_INSTRUCTIONS,
    "Transfer": TRANSFER,
    "SNF nursing": SNF,
}

# US towns with their state, written as notes write them: gazetteer cities and towns it does not hold.
TOWNS = (
    ("Tulsa", "OK", "Oklahoma"),
    ("Oak Park", "IL", "Illinois"),
    ("Rochester", "MN", "Minnesota"),
    ("Kenosha", "WI", "Wisconsin"),
    ("Joliet", "IL", "Illinois"),
    ("Duluth", "MN", "Minnesota"),
    ("Scranton", "PA", "Pennsylvania"),
    ("Yakima", "WA", "Washington"),
    ("Tupelo", "MS", "Mississippi"),
    ("Paducah", "KY", "Kentucky"),
    ("Bangor", "ME", "Maine"),
    ("Muncie", "IN", "Indiana"),
    ("Dothan", "AL", "Alabama"),
    ("Macon", "GA", "Georgia"),
    ("Gresham", "OR", "Oregon"),
    ("Waukegan", "IL", "Illinois"),
    ("Brockton", "MA", "Massachusetts"),
    ("Lowell", "MA", "Massachusetts"),
    ("Pueblo", "CO", "Colorado"),
    ("Eau Claire", "WI", "Wisconsin"),
    ("Bend", "OR", "Oregon"),
    ("Moline", "IL", "Illinois"),
    ("Cedar Rapids", "IA", "Iowa"),
    ("Lake Charles", "LA", "Louisiana"),
    ("Hagerstown", "MD", "Maryland"),
    ("Kalamazoo", "MI", "Michigan"),
    ("Bismarck", "ND", "North Dakota"),
    ("Roanoke", "VA", "Virginia"),
)
COUNTIES = ("Cook", "Orange", "Kings", "Marion", "Hamilton", "Jefferson", "Franklin", "Lake", "Polk", "Dane")
FACILITY_FORMS = (
    "{town} Rehabilitation and Nursing",
    "{town} Memorial Hospital",
    "St. Luke's {town}",
    "{town} Regional Medical Center",
    "Mercy {town}",
)
SNFS = ("Golden Oaks Nursing Home", "Maple Ridge Care Center", "Brookside Manor", "Willow Creek Health and Rehab")
PHARMACIES = ("Hillside Pharmacy", "Main Street Drug", "Parkview Apothecary", "Riverbend Pharmacy")
HOME_HEALTH = ("Sunrise Home Health", "Caring Hands Home Care", "Visiting Nurse Service of {town}")
PSYCH_HOSPITALS = ("Cedar Hills Behavioral Health", "Oakwood Psychiatric Hospital", "Pine Rest in {town}")
NICKNAMES = {
    "William": "Bill",
    "Robert": "Bobby",
    "Richard": "Rick",
    "James": "Jim",
    "Elizabeth": "Liz",
    "Margaret": "Peggy",
    "Patricia": "Trish",
    "Jennifer": "Jen",
    "Michael": "Mike",
    "Christopher": "Chris",
    "Katherine": "Kate",
    "Deborah": "Debbie",
    "Anthony": "Tony",
    "Joseph": "Joe",
    "Thomas": "Tom",
    "Rebecca": "Becky",
}
CREDENTIALS = ("MD", "DO", "PA-C", "NP", "APRN", "M.D.")
SW_CREDENTIALS = ("LCSW", "LICSW", "MSW", "RN CM", "BSW")
SEASONS = ("spring", "summer", "fall", "winter", "year")
TRANSPORTS = ("ALS AMBULANCE", "BLS AMBULANCE", "CRITICAL CARE TRANSPORT", "LIFE FLIGHT")
WARNINGS = ("you have chest pain", "you cannot keep fluids down", "your fever is over 101", "you feel short of breath")
MSE = (
    "casually dressed, good eye contact, speech normal rate, mood 'tired', affect constricted, denies SI/HI",
    "disheveled, psychomotor slowing, thought process linear, no AH/VH, insight fair, judgment fair",
)


def _town(rng: random.Random) -> tuple[str, str, str]:
    return rng.choice(TOWNS)


def dev2_values(patient: Patient, charttime: datetime, rng: random.Random) -> dict[str, str]:
    """The sample note values plus the dev2 ones: towns, facilities, nicknames, initials, credentials."""
    values = note_values(patient, charttime, rng)
    town, town2, prior, osh, birth = (_town(rng) for _ in range(5))
    ed, cons, liaison, cm, sw, ther, psy, hh, ref, clerk, don, nurse, pcp = (make_person(rng) for _ in range(13))
    first = patient.person.first
    values.update(
        {
            "town": town[0],
            "town_up": town[0].upper(),
            "town2": town2[0],
            "prior_city": prior[0],
            "osh_city": osh[0],
            "osh_city_up": osh[0].upper(),
            "osh_state": osh[1],
            "osh_state_full": osh[2],
            "birth_city": birth[0],
            "birth_state": birth[2],
            "county": f"{rng.choice(COUNTIES)} County",
            "osh": rng.choice(FACILITY_FORMS).format(town=osh[0]),
            "osh_up": rng.choice(FACILITY_FORMS).format(town=osh[0]).upper(),
            "snf": rng.choice(SNFS),
            "pharmacy": rng.choice(PHARMACIES),
            "home_health": rng.choice(HOME_HEALTH).format(town=town[0]),
            "psych": rng.choice(PSYCH_HOSPITALS).format(town=town2[0]),
            "route": f"Route {rng.randint(1, 99)}",
            "street_name": values["street"].split(" ", 1)[1],
            "street2": f"{rng.randint(100, 9999)} {rng.choice(('Main', 'Oak', 'Center', 'Elm'))} Street, Suite "
            f"{rng.randint(100, 450)}",
            "zip2": f"{rng.randint(10000, 99999)}",
            "fax": f"{rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            "nick": NICKNAMES.get(first, first),
            "nok_first_low": patient.next_of_kin.first.lower(),
            "nok_first_up": patient.next_of_kin.first.upper(),
            "pt_init": first[0],
            "pcp_init": pcp.first[0] + ".",
            "pcp_first": pcp.first,
            "pcp_last": pcp.last,
            "ed_first": ed.first,
            "ed_last": ed.last,
            "cons_last": cons.last,
            "liaison_first": liaison.first,
            "cm_last": cm.last,
            "sw_first": sw.first,
            "sw_last": sw.last,
            "ther_first": ther.first,
            "psy_first": psy.first,
            "psy_last": psy.last,
            "hh_first": hh.first,
            "ref_first_up": ref.first.upper(),
            "ref_last_up": ref.last.upper(),
            "unit_clerk_up": clerk.first.upper(),
            "don_last": don.last,
            "nurse_first": nurse.first,
            "nurse_init": nurse.last[0],
            "cred": rng.choice(CREDENTIALS),
            "sw_cred": rng.choice(SW_CREDENTIALS),
            "season": rng.choice(SEASONS),
            "when": rng.choice(("2 days ago", "last week", "yesterday")),
            "svc_text": values["exam_text"],
            "quote_rel": rng.choice(("my sister", "my son", "my girl", "my brother")),
            "mse": rng.choice(MSE),
            "warning": rng.choice(WARNINGS),
            "room": f"{rng.randint(100, 340)}{rng.choice('AB')}",
            "transport": rng.choice(TRANSPORTS),
            "transport_co": rng.choice(("wheelchair van", "facility van", "family")),
            "sex_up": values["sex_word"].upper(),
            "history_up": values["history"].upper(),
            "course_up": values["course"].upper(),
        }
    )
    return values


def make_dev2_set(n_docs: int, seed: int, patients: list[Patient]) -> list[dict]:
    """``n_docs`` gold records in the dev2 styles; about one note in five is written all lower case or all caps
    (case changes keep every offset: the values are ASCII)."""
    rng = random.Random(f"dev2-{seed}")
    records = []
    for i in range(n_docs):
        patient = patients[i % len(patients)]
        style = rng.choice(list(STYLES))
        charttime = datetime(2018, 1, 1) + timedelta(days=rng.randint(0, 1500), minutes=rng.randint(0, 1439))
        text, spans = render(STYLES[style], dev2_values(patient, charttime, rng))
        spans = [s for s in spans if not (s["label"] == "AGE" and int(text[s["start"] : s["end"]]) < 90)]
        case = rng.random()
        text = text.lower() if case < 0.12 else text.upper() if case < 0.2 else text
        records.append({"id": f"dev2-{i:05d}", "text": text, "spans": spans})
    return records

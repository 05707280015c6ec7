"""Synthetic patients and clinicians shared by every sample generator.

All sample kinds (notes, FHIR, HL7, DICOM) draw from the same cohort so that one synthetic patient appears in
several sources, as a real patient would: that is what per-patient surrogate consistency, date shifting and
erasure are tested against.  Every value is invented; the name lists are common census names, so no value
identifies a real person.  Surnames that are also clinical words or eponyms (Murphy's sign, Baker's cyst,
Wilson's disease, a walker) are left out: in the sample, a name found in the output must be a real leak.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra "
    "Margaret Donald Ashley Steven Kimberly Andrew Emily Joshua Donna Kenneth Michelle Kevin Carol "
    "Brian Amanda George Melissa Timothy Deborah Ronald Stephanie Jason Rebecca Edward Sharon Jeffrey Laura "
    "Ryan Cynthia Jacob Dorothy Gary Amy Nicholas Kathleen Eric Angela Jonathan Shirley Stephen Brenda "
    "Larry Emma Justin Anna Scott Pamela Brandon Nicole Benjamin Samantha Samuel Katherine Gregory Christine "
    "Alexander Helen Patrick Debra Rachel Raymond Carolyn Janet Dennis Maria Jerry Tyler "
    "Heather Aaron Diane Jose Julie Adam Joyce Nathan Victoria Ruth Zachary Virginia Douglas Lauren "
    "Peter Kelly Kyle Christina Noah Joan Ethan Evelyn Jeremy Judith Walter Andrea Christian Hannah Keith "
    "Megan Roger Cheryl Terry Jacqueline Austin Martha Sean Madison Gerald Teresa Carl Gloria Harold Sara "
    "Dylan Janice Arthur Ann Lawrence Kathryn Abigail Jesse Sophia Bryan Frances Billy Bruce "
    "Alice Gabriel Judy Joe Isabella Logan Julia Alan Juan Albert Denise Willie Danielle Elijah "
    "Marilyn Wayne Beverly Randy Charlotte Vincent Natalie Mason Theresa Roy Diana Ralph Brittany Bobby "
    "Doris Russell Kayla Bradley Alexis Philip Lori Eugene Marie Priya Wei Mohammed Fatima Aisha Hiroshi "
    "Yuki Carlos Lucia Ahmed Olga Dmitri Chen Mei Kwame Ngozi Rahul Anjali Sven Ingrid Pierre Camille "
).split()
LAST_NAMES = (
    "Smith Johnson Williams Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Anderson Thomas Taylor Moore Martin Lee Perez Sanchez Clark "
    "Ramirez Robinson Scott Torres Nguyen Flores "
    "Rivera Campbell Mitchell Carter Roberts Gomez Phillips Diaz "
    "Edwards Collins Reyes Stewart Morris Morales Rogers Gutierrez Ortiz Morgan Cooper Peterson "
    "Bailey Howard Ramos Kim Cox Richardson Watson Chavez "
    "Mendoza Ruiz Alvarez Castillo Sanders Patel Myers Ross Foster Jimenez Powell Jenkins "
    "Perry Russell Sullivan Coleman Butler Henderson Barnes Gonzales Vasquez Simmons Romero "
    "Patterson Griffin Wallace Moreno Bryant "
    "Herrera Gibson Tran Medina Aguilar Stevens Castro Marshall Owens Harrison Fernandez "
    "McDonald Washington Vargas Chen Freeman Webb Tucker Guzman Burns Crawford "
    "Olson Simpson Porter Mendez Silva Shaw Snyder Dixon Munoz Hicks Holmes Palmer "
    "Wagner Robertson Boyd Salazar Warren Meyer Schmidt Garza Daniels "
    "O'Brien Kowalski Nakamura Okafor Haddad Novak Lindqvist Dubois Rossi Yamamoto Abdullah Mensah Ivanova "
).split()
STREETS = (
    "Maple Oak Pine Cedar Elm Washington Lake Hill Park Main Church Highland Sunset River Spring Ridge "
    "Chestnut Willow Meadow Forest Harbor Mill Prospect Franklin Jefferson Lincoln Madison Adams Union"
).split()
STREET_TYPES = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way", "St", "Ave", "Rd")
CITIES = (
    ("Springfield", "IL", "627"),
    ("Riverton", "WY", "825"),
    ("Fairview", "OR", "970"),
    ("Georgetown", "TX", "786"),
    ("Salem", "MA", "019"),
    ("Madison", "WI", "537"),
    ("Clinton", "IA", "527"),
    ("Franklin", "TN", "370"),
    ("Greenville", "SC", "296"),
    ("Bristol", "CT", "060"),
    ("Dover", "DE", "199"),
    ("Ashland", "KY", "411"),
    ("Burlington", "VT", "054"),
    ("Marion", "OH", "433"),
    ("Oxford", "MS", "386"),
    ("Milton", "FL", "325"),
    ("Chester", "PA", "190"),
    ("Auburn", "AL", "368"),
    ("Newport", "RI", "028"),
    ("Jackson", "MI", "492"),
)
HOSPITALS = (
    "St. Mary's Medical Center",
    "Riverside General Hospital",
    "Mercy Regional Hospital",
    "Lakeview Clinic",
    "Northside Community Hospital",
    "Good Samaritan Hospital",
    "Valley Health Center",
    "Hillcrest Medical Center",
    "Providence Memorial Hospital",
    "Baptist Health Clinic",
    "Sacred Heart Hospital",
    "Cedar Grove Clinic",
)


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    sex: str

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Patient:
    person: Person
    mrn: str
    ssn: str
    birth_date: date
    street: str
    city: str
    state: str
    zip_code: str
    phone: str
    email: str
    hospital: str
    next_of_kin: Person
    attending: Person

    def phi_strings(self) -> list[str]:
        """Every identifier of this patient as it may appear verbatim in the sample."""
        p = self.person
        return [
            p.first,
            p.last,
            p.full,
            self.mrn,
            self.ssn,
            self.street,
            self.phone,
            self.email,
            self.birth_date.isoformat(),
            self.birth_date.strftime("%m/%d/%Y"),
            self.zip_code,
            self.next_of_kin.full,
            self.attending.last,
        ]


def _phone(rng: random.Random) -> str:
    return f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"


def make_person(rng: random.Random) -> Person:
    return Person(rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice("MF"))


def make_cohort(n: int, seed: int = 7) -> list[Patient]:
    """``n`` synthetic patients, the same for the same seed."""
    rng = random.Random(seed)
    patients = []
    used_mrns: set[str] = set()
    for _ in range(n):
        person = make_person(rng)
        mrn = f"{rng.randint(10_000_000, 99_999_999)}"
        while mrn in used_mrns:
            mrn = f"{rng.randint(10_000_000, 99_999_999)}"
        used_mrns.add(mrn)
        city, state, zip3 = rng.choice(CITIES)
        handle = person.last.lower().replace("'", "")
        birth = date(1930, 1, 1) + timedelta(days=rng.randint(0, 365 * 85))
        patients.append(
            Patient(
                person=person,
                mrn=mrn,
                ssn=f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
                birth_date=birth,
                street=f"{rng.randint(10, 9899)} {rng.choice(STREETS)} {rng.choice(STREET_TYPES)}",
                city=city,
                state=state,
                zip_code=f"{zip3}{rng.randint(10, 99)}",
                phone=_phone(rng),
                email=f"{person.first.lower()}.{handle}{rng.randint(1, 99)}@example.org",
                hospital=rng.choice(HOSPITALS),
                next_of_kin=make_person(rng),
                attending=make_person(rng),
            )
        )
    return patients

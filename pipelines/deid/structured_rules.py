"""The rule table of structured de-identification (``structured_rules.yaml``), loaded and checked.

Each rule says what one field of a FHIR resource, an HL7 v2 segment or a CSV profile is, and so what
``StructuredDeidentifier`` (``structured.py``) does with it; a rule naming an unknown action, path or profile
fails loading with ``StructuredRulesError`` before any record is touched.

Address parts are not decided here: a CSV column that holds one (known by its name alone,
``address_policy.COLUMN_PARTS``, as the residual-PHI gate knows it) must say ``action: address``, and
``medcurate.core.address_policy`` decides whether it stays (state, country),
is cut (a US ZIP to three digits) or goes; a ``keep`` on such a column fails loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from medcurate.core import address_policy

DEFAULT_RULES = Path(__file__).with_name("structured_rules.yaml")
ACTIONS = frozenset(
    "pseudonym identifier reference name address shift birth_date text tag drop keep resource clinician "
    "keep_first_component zip3".split()
)


class StructuredRulesError(ValueError):
    """The rule table is invalid; the message names the rule."""


@dataclass(frozen=True)
class Rule:
    action: str
    # Where the rule is in the table ("Patient.name", "*.**.identifier", "PID-5", "mimic_notes.charttime").
    name: str = ""
    namespace: str = "identifier"
    label: str = "REDACTED"
    when_field: int | None = None
    when_in: frozenset[str] = frozenset()
    # CSV ``address`` columns: which part of an address the column holds (address_policy decides its fate).
    part: address_policy.Part | None = None


@dataclass(frozen=True)
class FhirRule:
    resource: str
    path: tuple[str, ...]
    anywhere: bool
    rule: Rule

    def matches(self, resource: str, path: tuple[str, ...]) -> bool:
        if self.resource not in ("*", resource):
            return False
        if self.anywhere:
            return path[-len(self.path) :] == self.path
        return path == self.path


@dataclass(frozen=True)
class CsvProfile:
    patient_column: str
    keep_unlisted: bool
    columns: dict[str, Rule]


@dataclass(frozen=True)
class StructuredRules:
    fhir: tuple[FhirRule, ...]
    shift_unclaimed_dates: bool
    patient_reference_elements: tuple[str, ...]
    hl7_patient: tuple[str, int, int]
    hl7: dict[tuple[str, int], Rule]
    hl7_segments: frozenset[str]
    csv: dict[str, CsvProfile]
    notes_csv_profile: str
    restricted_zip3: frozenset[str]
    us_countries: frozenset[str]


def _rule(item: dict[str, Any], where: str, name: str) -> Rule:
    action = item.get("action")
    if action not in ACTIONS:
        raise StructuredRulesError(f"{where}: action '{action}' is not one of {sorted(ACTIONS)}")
    when = item.get("when") or {}
    return Rule(
        action=action,
        name=name,
        namespace=str(item.get("namespace", "identifier")),
        label=str(item.get("label", "REDACTED")),
        when_field=int(when["field"]) if "field" in when else None,
        # HL7: codes of the guard field; FHIR: identifier type codes (Identifier.type.coding.code)
        when_in=frozenset(str(v) for v in when.get("in", when.get("type", ()))),
    )


def _csv_rule(item: dict[str, Any], profile: str, column: str) -> Rule:
    """A column's rule; a column holding an address part is de-identified as the address policy says."""
    where, name = f"csv {profile}.{column}", f"{profile}.{column}"
    rule = _rule(item, where, name)
    named = address_policy.column_part(column)
    if named is not None and rule.action != "address":
        raise StructuredRulesError(
            f"{where}: an address part ({named}) takes `action: address`, not '{rule.action}': "
            "medcurate/core/address_policy.py decides what of an address is kept"
        )
    if rule.action != "address":
        return rule
    if named is None:  # the gate finds address columns by name alone: one list, address_policy.COLUMN_PARTS
        names = ", ".join(sorted(address_policy.COLUMN_PARTS))
        raise StructuredRulesError(f"{where}: `action: address` needs a column named as an address part ({names})")
    return Rule(rule.action, rule.name, part=named)


def load_rules(path: Path | None = None) -> StructuredRules:
    data = yaml.safe_load((path or DEFAULT_RULES).read_text(encoding="utf-8"))
    fhir = []
    for item in data["fhir"]["rules"]:
        raw = str(item["path"])
        anywhere = raw.startswith("**.")
        parts = tuple((raw[3:] if anywhere else raw).split("."))
        name = f"{item['resource']}.{raw}"
        fhir.append(FhirRule(str(item["resource"]), parts, anywhere, _rule(item, f"fhir {name}", name)))
    hl7 = {}
    for item in data["hl7v2"]["rules"]:
        name = f"{item['segment']}-{item['field']}"
        if (item["segment"], int(item["field"])) in hl7:
            raise StructuredRulesError(f"hl7v2 {name}: listed twice")
        hl7[(str(item["segment"]), int(item["field"]))] = _rule(item, f"hl7v2 {name}", name)
    patient = data["hl7v2"]["patient_field"]
    csv = {
        name: CsvProfile(
            patient_column=str(profile["patient_column"]),
            keep_unlisted=profile.get("unlisted", "drop") == "keep",
            columns={col: _csv_rule(r, name, col) for col, r in profile["columns"].items()},
        )
        for name, profile in data["csv"].items()
    }
    notes_csv_profile = str(data["notes_csv_profile"])
    if notes_csv_profile not in csv:
        raise StructuredRulesError(f"notes_csv_profile: no csv profile named '{notes_csv_profile}'")
    return StructuredRules(
        fhir=tuple(fhir),
        shift_unclaimed_dates=bool(data["fhir"].get("shift_unclaimed_dates", True)),
        patient_reference_elements=tuple(data["fhir"]["patient_reference_elements"]),
        hl7_patient=(str(patient["segment"]), int(patient["field"]), int(patient["component"])),
        hl7=hl7,
        hl7_segments=frozenset(str(seg) for seg in data["hl7v2"]["segments"]) | {seg for seg, _ in hl7},
        csv=csv,
        notes_csv_profile=notes_csv_profile,
        restricted_zip3=frozenset(str(z) for z in data["restricted_zip3"]),
        us_countries=frozenset(str(c).lower() for c in data["us_countries"]),
    )


@lru_cache(maxsize=1)
def default_rules() -> StructuredRules:
    return load_rules()

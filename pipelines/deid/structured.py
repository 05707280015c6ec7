"""De-identify structured records field by field: FHIR resources, HL7 v2 messages, CSV rows.

Free text needs a statistical engine because PHI can sit anywhere in it; a structured record says what each
field is, so a rule table (``structured_rules.yaml``) decides per field, and a reviewer can read the whole
policy in one file.  Every action reuses the text engine's primitives, so one patient comes out the same in a
note and in a record: ``medcurate.core.keys.pseudonym`` for identifiers (the ``patient`` namespace gives exactly the
document's ``patient_pseudonym``), ``Replacer`` surrogates for names, ``medcurate.core.keys.date_shift_days`` (via
``shift_date_text``) for dates.  Unknown or unparsable values of a PHI field are dropped, never passed on.
``names_seen`` collects the words of every name field the record held (raw values, in memory only): a free-text
leaf is short and loses the context a whole note gives the text engine ("Randy presents with..."), so the
deid stage also replaces those words wherever they occur in the record's free-text leaves.
``counts`` holds how many fields each rule touched, keyed "<format>:<rule>:<action>" ("hl7v2:PID-5:name";
no values), for the stage report and the catalog's deid_events.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any

from medcurate.core import address_policy
from medcurate.core.keys import keyed_hash, pseudonym
from medcurate.formats.date_text import shift_date_text
from medcurate.formats.hl7v2 import Delimiters
from pipelines.deid.config import DeidConfig, default_config
from pipelines.deid.engine import PhiSpan
from pipelines.deid.structured_rules import Rule, StructuredRules, StructuredRulesError, default_rules
from pipelines.deid.surrogates import AGE_CEILING, NAME_PART, Replacer

# FHIR date, dateTime and instant (year alone excluded: a bare year is no identifier).
FHIR_DATE = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])(?:-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?")
BARE_YEAR = re.compile(r"\d{4}")
US_ZIP = re.compile(r"(\d{3})\d{2}(?:-?\d{4})?")

TextDeid = Callable[[str, str], str]
"""(text, patient key) -> de-identified text; the deid stage passes its engine and replacer."""


class _Drop:
    """Marks a value the rules remove (None is a legitimate JSON value)."""


DROP = _Drop()


class StructuredDeidentifier:
    """Applies the rule table.  ``text_deid`` de-identifies free-text fields; without it they are removed."""

    def __init__(
        self,
        key: bytes,
        config: DeidConfig | None = None,
        rules: StructuredRules | None = None,
        text_deid: TextDeid | None = None,
        today: date | None = None,
        replacer: Replacer | None = None,
    ) -> None:
        self.key = key
        self.config = config or default_config()
        self.rules = rules or default_rules()
        self.today = today or (replacer.today if replacer else date.today())
        self.replacer = replacer or Replacer(key, self.config, today=self.today)
        self.text_deid = text_deid
        self.counts: Counter[str] = Counter()
        self.names_seen: set[str] = set()

    # ---- value operators shared by every format ----
    def pseudonym(self, value: str, namespace: str) -> str:
        return pseudonym(self.key, value.strip(), namespace)

    def name(self, value: str, patient: str) -> str:
        if not value.strip():
            return value
        self.names_seen.update(NAME_PART.findall(value))
        return self.replacer.apply(value, [PhiSpan(0, len(value), "NAME")], patient).text

    def shift(self, value: str, patient: str) -> str | _Drop:
        if BARE_YEAR.fullmatch(value.strip()):
            return value
        shifted = shift_date_text(value.strip(), -self.replacer.date_offset_days(patient))
        return DROP if shifted is None else shifted

    def birth_date(self, value: str, patient: str) -> str | _Drop:
        """Safe Harbor: a birth date that puts the person at 90 or over becomes one year for all of them."""
        digits = re.match(r"\d{4}", value.strip())
        if digits is None:
            return DROP
        if self.today.year - int(digits.group(0)) >= AGE_CEILING:
            return str(self.today.year - AGE_CEILING)
        return self.shift(value, patient)

    def zip3(self, value: str, country: str = "") -> str | _Drop:
        match = US_ZIP.fullmatch(value.strip())
        if match is None or (country and country.strip().lower() not in self.rules.us_countries):
            return DROP
        prefix = match.group(1)
        return "000" if prefix in self.rules.restricted_zip3 else prefix

    def address_part(self, part: address_policy.Part, value: str) -> str | _Drop:
        """One address part alone: kept if ``address_policy`` keeps it, a ZIP cut to three digits, else dropped."""
        if part in address_policy.KEPT:
            return value
        return self.zip3(value) if part is address_policy.Part.POSTAL_CODE else DROP

    def text(self, value: str, patient: str) -> str | _Drop:
        return DROP if self.text_deid is None else self.text_deid(value, patient)

    def _leaf(self, rule: Rule, value: str, patient: str) -> str | _Drop:
        """Actions that work on one string, whatever format it came from."""
        action = rule.action
        if action == "keep":
            return value
        if action == "drop" or not value.strip():
            return DROP if action == "drop" else value
        if action in ("pseudonym", "identifier"):
            return self.pseudonym(value, rule.namespace)
        if action == "name":
            return self.name(value, patient)
        if action == "shift":
            return self.shift(value, patient)
        if action == "birth_date":
            return self.birth_date(value, patient)
        if action == "zip3":
            return self.zip3(value)
        if action == "address" and rule.part is not None:  # one column of a CSV address
            return self.address_part(rule.part, value)
        if action == "text":
            return self.text(value, patient)
        if action == "tag":
            return f"[{rule.label}]"
        raise StructuredRulesError(f"action '{action}' does not apply to a single value")

    # ---- FHIR ----
    def fhir(self, resource: dict[str, Any], patient_key: str | None = None) -> dict[str, Any]:
        """A de-identified copy of a FHIR resource (a Bundle: every entry, each with its own patient)."""
        patients = _bundle_patients(resource) if resource.get("resourceType") == "Bundle" else {}
        default = patient_key
        if default is None and len(set(patients.values())) == 1:
            default = next(iter(patients.values()))
        out = self._resource(resource, patients, default or "")
        return out if isinstance(out, dict) else {}

    def _resource(self, resource: dict[str, Any], patients: dict[str, str], default: str) -> Any:
        rtype = str(resource.get("resourceType", ""))
        patient = self._patient_of(resource, patients) or default
        out = {}
        for key, value in resource.items():
            new = self._walk(value, rtype, (key,), patient, patients)
            if new is not DROP:
                out[key] = new
        return out

    def _patient_of(self, resource: dict[str, Any], patients: dict[str, str]) -> str | None:
        if resource.get("resourceType") == "Patient" and resource.get("id"):
            return str(resource["id"])
        for element in self.rules.patient_reference_elements:
            ref = resource.get(element)
            if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                target = ref["reference"]
                if target in patients:
                    return patients[target]
                if "Patient/" in target:
                    return target.rsplit("Patient/", 1)[1].split("/")[0]
        return None

    def _walk(self, node: Any, rtype: str, path: tuple[str, ...], patient: str, patients: dict[str, str]) -> Any:
        if isinstance(node, list):
            items = [self._walk(item, rtype, path, patient, patients) for item in node]
            kept = [item for item in items if item is not DROP]
            return kept if kept else DROP
        rule = next((r.rule for r in self.rules.fhir if r.matches(rtype, path) and _typed_as(r.rule, node)), None)
        if rule is not None:
            result = self._fhir_action(rule, node, rtype, path, patient, patients)
            if result is not None:
                self.counts[f"fhir:{rule.name}:{rule.action}"] += 1
                return result
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                return self._reference_object(node)
            out = {}
            for key, value in node.items():
                new = self._walk(value, rtype, (*path, key), patient, patients)
                if new is not DROP:
                    out[key] = new
            return out
        if isinstance(node, str) and self.rules.shift_unclaimed_dates and FHIR_DATE.fullmatch(node):
            self.counts["fhir:unclaimed date:shift"] += 1
            return self.shift(node, patient)
        return node

    def _fhir_action(
        self, rule: Rule, node: Any, rtype: str, path: tuple[str, ...], patient: str, patients: dict[str, str]
    ) -> Any:
        """The rule's result, or None when the rule does not apply to this kind of node (walk into it)."""
        action = rule.action
        if action == "drop":
            return DROP
        if action == "keep":
            return node
        if action == "resource":
            return self._resource(node, patients, patient) if isinstance(node, dict) else DROP
        if action == "reference":
            return self._reference(node) if isinstance(node, str) else self._reference_object(node)
        if action == "pseudonym" and rule.namespace == "resource" and isinstance(node, str):
            return self._resource_id(rtype, node)
        if action == "identifier" and isinstance(node, dict):
            kept = {k: node[k] for k in ("use", "type") if k in node}
            if isinstance(node.get("value"), str):
                kept["value"] = self.pseudonym(node["value"], rule.namespace)
            return kept
        if action == "address" and isinstance(node, dict):
            return self._fhir_address(node)
        if action == "name" and isinstance(node, dict):
            return self._human_name(node, patient)
        if isinstance(node, str):
            return self._leaf(rule, node, patient)
        return None

    def _human_name(self, name: dict[str, Any], patient: str) -> dict[str, Any]:
        out = {k: name[k] for k in ("use", "prefix", "suffix") if k in name}
        for part in ("text", "family"):
            if isinstance(name.get(part), str):
                out[part] = self.name(name[part], patient)
        if isinstance(name.get("given"), list):
            out["given"] = [self.name(g, patient) for g in name["given"] if isinstance(g, str)]
        return out

    def _fhir_address(self, address: dict[str, Any]) -> dict[str, Any]:
        """The elements ``address_policy`` keeps (state, country), a ZIP cut to three digits; the rest dropped."""
        kept = [e for e, part in address_policy.FHIR_ADDRESS.items() if part in address_policy.KEPT]
        out = {k: address[k] for k in (*address_policy.FHIR_ADDRESS_NOT_PLACES, *kept) if k in address}
        if isinstance(address.get("postalCode"), str):
            zip3 = self.zip3(address["postalCode"], str(address.get("country", "")))
            if zip3 is not DROP:
                out["postalCode"] = zip3
        return out

    def _xad(self, comps: list[str], value: Callable[[int], str]) -> list[str]:
        """An XAD with the components ``address_policy`` keeps (state, country; the type), the ZIP cut to three."""
        out = []
        for c, raw in enumerate(comps[:7], 1):
            part = address_policy.HL7_XAD.get(c)
            if part is address_policy.Part.POSTAL_CODE and value(c):
                zip3 = self.zip3(value(c), value(6))
                out.append("" if zip3 is DROP else zip3)
            else:
                out.append(raw if part in address_policy.KEPT or c in address_policy.HL7_XAD_NOT_PLACES else "")
        return out

    def _resource_id(self, rtype: str, rid: str) -> str:
        return pseudonym(self.key, rid, "patient" if rtype == "Patient" else rtype.lower())

    def _reference(self, ref: str) -> str | _Drop:
        """ "Patient/123", "https://host/fhir/Patient/123/_history/2", "urn:uuid:..." with the ids keyed."""
        if ref.startswith("#"):
            return ref
        if ref.startswith("urn:uuid:"):
            return "urn:uuid:" + str(uuid.UUID(keyed_hash(self.key, "fhir-uuid", ref[9:])[:32]))
        match = re.search(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$", ref)
        if match is None:
            return DROP
        return f"{match.group(1)}/{self._resource_id(match.group(1), match.group(2))}"

    def _reference_object(self, node: dict[str, Any]) -> dict[str, Any]:
        out = {k: node[k] for k in ("type",) if k in node}
        ref = self._reference(node["reference"]) if isinstance(node.get("reference"), str) else DROP
        if ref is not DROP:
            out["reference"] = ref
        if isinstance(node.get("identifier"), dict) and isinstance(node["identifier"].get("value"), str):
            out["identifier"] = {"value": self.pseudonym(node["identifier"]["value"], "identifier")}
        return out

    # ---- HL7 v2 ----
    def hl7(self, message: str) -> str:
        """A de-identified copy of one HL7 v2 message (segments separated by CR or newlines)."""
        segments = [s for s in re.split(r"\r\n|\r|\n", message) if s]
        delims = Delimiters.from_msh(segments[0]) if segments else None
        if delims is None:
            raise ValueError("HL7 message does not start with a readable MSH segment")
        patient = self._hl7_patient(segments, delims)
        kept = []
        for segment in segments:
            name = segment.split(delims.field, 1)[0]
            if name in self.rules.hl7_segments:
                kept.append(self._hl7_segment(segment, delims, patient))
            else:  # a segment the rule table does not know (IN1, GT1, MRG, Z-segments...) may hold anything
                self.counts[f"hl7v2:{name[:3]}:segment_dropped"] += 1
        return "\r".join(kept) + "\r"

    def _hl7_patient(self, segments: list[str], d: Delimiters) -> str:
        name, field, component = self.rules.hl7_patient
        for seg in segments:
            if seg.startswith(name + d.field):
                fields = seg.split(d.field)
                value = fields[field] if field < len(fields) else ""
                comps = value.split(d.repetition)[0].split(d.component)
                return d.unescape(comps[component - 1]).strip() if component <= len(comps) else ""
        return ""

    def _hl7_segment(self, segment: str, d: Delimiters, patient: str) -> str:
        fields = segment.split(d.field)
        name = fields[0]
        offset = 1 if name == "MSH" else 0  # MSH-1 is the separator itself: MSH-n sits at index n - 1
        for i in range(1, len(fields)):
            number = i + offset
            rule = self.rules.hl7.get((name, number))
            if rule is None or not fields[i]:
                continue
            if rule.when_field is not None:
                guard_index = rule.when_field - offset
                guard = fields[guard_index] if guard_index < len(fields) else ""
                if guard.split(d.component)[0] not in rule.when_in:
                    continue
            new = self._hl7_field(rule, fields[i], d, patient)
            fields[i] = "" if new is DROP else new
            self.counts[f"hl7v2:{rule.name}:{rule.action}"] += 1
        while len(fields) > 1 and not fields[-1]:
            fields.pop()
        return d.field.join(fields)

    def _hl7_field(self, rule: Rule, value: str, d: Delimiters, patient: str) -> str | _Drop:
        if rule.action == "text":
            out = [self.text(d.unescape(rep), patient) for rep in value.split(d.repetition)]
            return d.repetition.join(_hl7_escape(v, d) for v in out if v is not DROP)
        reps = [self._hl7_repetition(rule, rep.split(d.component), d, patient) for rep in value.split(d.repetition)]
        kept = [d.component.join(c).rstrip(d.component) for c in reps if c is not None]
        kept = [r for r in kept if r]
        return d.repetition.join(kept) if kept else DROP

    def _hl7_repetition(self, rule: Rule, comps: list[str], d: Delimiters, patient: str) -> list[str] | None:
        """The components of one repetition after the rule; None drops the repetition."""

        def value(c: int) -> str:
            return d.unescape(comps[c - 1].split(d.subcomponent)[0]).strip() if c <= len(comps) else ""

        def leaf(text: str, action: str) -> str:
            new = self._leaf(Rule(action, rule.name, rule.namespace, rule.label), text, patient) if text else ""
            return "" if new is DROP else _hl7_escape(new, d)

        action = rule.action
        if action == "drop":
            return None
        if action == "keep_first_component":
            return [comps[0]]
        if action == "identifier":  # CX: ID ^ check digit ^ scheme ^ assigning authority ^ identifier type
            return [leaf(value(1), "pseudonym"), "", "", "", comps[4] if len(comps) > 4 else ""]
        if action == "name":  # XPN: family ^ given ^ middle ^ suffix ^ prefix ^ degree ^ type
            return [leaf(value(c), "name") for c in (1, 2, 3)] + comps[3:7]
        if action == "clinician":  # XCN: ID ^ family ^ given ^ middle ^ suffix ^ prefix ^ degree
            names = [leaf(value(c), "name") for c in (2, 3, 4)]
            return [leaf(value(1), "pseudonym") if value(1) else "", *names, *comps[4:7]]
        if action == "address":  # XAD: the parts address_policy keeps, the ZIP cut to three digits
            return self._xad(comps, value)
        if action in ("shift", "birth_date"):  # TS / DTM: the first component is the instant
            return [leaf(value(1), action)]
        new = self._leaf(rule, d.unescape(d.component.join(comps)), patient)
        return None if new is DROP else [_hl7_escape(new, d)]

    # ---- CSV ----
    def csv_rows(self, rows: Iterable[dict[str, str]], profile: str) -> Iterator[dict[str, str]]:
        """De-identified rows for a column profile of the rule table; unlisted columns per the profile."""
        spec = self.rules.csv[profile]
        for row in rows:
            patient = (row.get(spec.patient_column) or "").strip()
            out = {}
            for column, value in row.items():
                rule = spec.columns.get(column)
                if rule is None and spec.keep_unlisted and address_policy.column_part(column) is not None:
                    # `unlisted: keep` keeps no address part the policy removes (an export's extra "City");
                    # `unlisted: drop` drops every unlisted column, the state too.
                    rule = Rule("address", f"{profile}.{column}", part=address_policy.column_part(column))
                if rule is None:
                    if spec.keep_unlisted:
                        out[column] = value
                    else:
                        self.counts[f"csv:{profile}.(unlisted):drop"] += 1
                    continue
                new = self._leaf(rule, value or "", patient)
                self.counts[f"csv:{rule.name}:{rule.action}"] += 1
                if new is not DROP:
                    out[column] = new
            yield out


def _typed_as(rule: Rule, node: Any) -> bool:
    """A FHIR rule with ``when: {type: [...]}`` applies only to an element whose type has one of those codes."""
    if not rule.when_in:
        return True
    codings = (node.get("type") or {}).get("coding") if isinstance(node, dict) else None
    return any(isinstance(c, dict) and c.get("code") in rule.when_in for c in codings or [])


def _bundle_patients(bundle: dict[str, Any]) -> dict[str, str]:
    """Reference string -> Patient id, for every way a Bundle's entries may point at one of its patients."""
    found = {}
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient" and resource.get("id"):
            pid = str(resource["id"])
            found[f"Patient/{pid}"] = pid
            if entry.get("fullUrl"):
                found[str(entry["fullUrl"])] = pid
    return found


def _hl7_escape(value: str, d: Delimiters) -> str:
    """Write a replacement back into HL7 with the message's escape sequences (surrogates are plain words,
    but de-identified free text may contain any separator)."""
    e = d.escape
    out = value.replace(e, f"{e}E{e}")
    for char, code in ((d.field, "F"), (d.component, "S"), (d.repetition, "R"), (d.subcomponent, "T")):
        out = out.replace(char, f"{e}{code}{e}")
    return out.replace("\n", f"{e}.br{e}")


def text_deidentifier(engine, replacer: Replacer) -> TextDeid:
    """The free-text hook for ``StructuredDeidentifier``: the text engine's spans, the replacer's operators."""

    def deid(text: str, patient: str) -> str:
        return replacer.apply(text, engine.analyze(text), patient).text

    return deid

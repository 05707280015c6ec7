"""Load the de-identification configuration (deid.yaml, names.yaml, the name gazetteers) into typed objects.

Everything a reviewer may want to tune (patterns, scores, context words, allow-lists, operators) lives in the
YAML files beside this module, so a change to what counts as PHI is a data change that shows up in review as
such, not a code change.  Loading validates labels and operators up front so a typo fails at start-up.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import regex
import yaml

HERE = Path(__file__).parent
DEFAULT_CONFIG = HERE / "deid.yaml"
DEFAULT_NAMES = HERE / "names.yaml"
DEFAULT_PLACES = HERE / "places.yaml"
OPERATORS = ("tag", "surrogate", "shift", "cap90")


class DeidConfigError(ValueError):
    """The de-identification configuration is invalid; the message names the key."""


@dataclass(frozen=True)
class PatternRule:
    name: str
    label: str
    score: float
    regex: str
    negative_before: tuple[str, ...] = ()
    negative_after: tuple[str, ...] = ()
    # Words anywhere in the same sentence shortly before the match, not only right before it.
    negative_in_sentence_before: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameRules:
    titles: frozenset[str]
    clinical_titles: frozenset[str]
    credentials: frozenset[str]
    context_before: tuple[str, ...]
    weak_context: frozenset[str]
    any_case_context: frozenset[str]
    preposition_context: frozenset[str]
    person_verbs: frozenset[str]
    contact_verbs: frozenset[str]
    stop_words: frozenset[str]
    ambiguous_names: frozenset[str]
    never_names: frozenset[str]
    drug_stems: tuple[str, ...]
    initials_regex: str
    eponym_nouns: frozenset[str]
    relations: frozenset[str]
    kin_after_possessive: frozenset[str]
    vocative_next: frozenset[str]
    id_labels: frozenset[str]
    surname_particles: frozenset[str]
    first_names: frozenset[str]
    last_names: frozenset[str]


@dataclass(frozen=True)
class PlaceRules:
    """Place gazetteer (places.yaml): names as written, and the ones that are also ordinary words."""

    countries: frozenset[str]
    cities: frozenset[str]
    ambiguous: frozenset[str]
    # US towns of 500 inhabitants or more (GeoNames, CC BY 4.0; places_us_towns.csv), lower case: so many are
    # surnames or words that they count only after a place preposition (pipelines/deid/places.py).
    towns: frozenset[str] = frozenset()
    # The US states written out, as in places.yaml (order kept: deid.yaml's STATE_NAME fragment is made of them).
    states: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeidConfig:
    labels: tuple[str, ...]
    spacy_model: str
    spacy_disable: tuple[str, ...]
    batch_size: int
    entity_map: dict[str, str]
    spacy_score: float
    score_threshold: float
    operators: dict[str, str]
    date_shift_max_days: int
    patterns: tuple[PatternRule, ...]
    strip_leading_words: frozenset[str]
    generic_facility_words: frozenset[str]
    never_flag: frozenset[str]
    text_source_kinds: frozenset[str]
    extra_keep_keys: frozenset[str]
    names: NameRules
    places: PlaceRules

    def operator(self, label: str) -> str:
        return self.operators.get(label, self.operators["default"])


def _read_names(path: Path) -> frozenset[str]:
    with path.open(encoding="utf-8", newline="") as fh:
        return frozenset(row["name"].lower() for row in csv.DictReader(fh) if row["name"])


def _expand(pattern: str, fragments: dict[str, str]) -> str:
    for key, value in fragments.items():
        pattern = pattern.replace("{" + key + "}", value)
    return pattern


def _parse_patterns(raw: list[dict[str, Any]], labels: tuple[str, ...], fragments: dict[str, str]):
    rules = []
    for item in raw:
        name = item.get("name", "?")
        if item.get("label") not in labels:
            raise DeidConfigError(f"pattern '{name}': label '{item.get('label')}' is not one of {list(labels)}")
        expanded = _expand(str(item["regex"]), fragments)
        try:
            regex.compile(expanded)
        except regex.error as exc:
            raise DeidConfigError(f"pattern '{name}': invalid regex ({exc})") from None
        rules.append(
            PatternRule(
                name=name,
                label=item["label"],
                score=float(item["score"]),
                regex=expanded,
                negative_before=tuple(str(w) for w in item.get("negative_before", ())),
                negative_after=tuple(str(w) for w in item.get("negative_after", ())),
                negative_in_sentence_before=tuple(str(w) for w in item.get("negative_in_sentence_before", ())),
            )
        )
    return tuple(rules)


def _words(data: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    """A word list from YAML.  Unquoted ``on``, ``yes``, ``no`` and ``off`` are booleans in YAML 1.1, so a list
    holding one silently loses that word (``on`` was missing from the stop words that way): fail instead."""
    items = data.get(key) or ()
    odd = [w for w in items if not isinstance(w, str)]
    if odd:
        raise DeidConfigError(f"{source} {key}: {odd} are not words; quote them ('on', 'no')")
    return tuple(items)


def _parse_names(data: dict[str, Any]) -> NameRules:
    def words(key: str) -> frozenset[str]:
        return frozenset(_words(data, key, "names"))

    def lower(key: str) -> frozenset[str]:
        return frozenset(w.lower() for w in _words(data, key, "names"))

    return NameRules(
        titles=words("titles"),
        clinical_titles=words("clinical_titles"),
        credentials=words("credentials"),
        context_before=tuple(sorted(lower("context_before"), key=len, reverse=True)),
        weak_context=lower("weak_context"),
        any_case_context=lower("any_case_context"),
        preposition_context=lower("preposition_context"),
        person_verbs=lower("person_verbs"),
        contact_verbs=lower("contact_verbs"),
        stop_words=lower("stop_words"),
        ambiguous_names=lower("ambiguous_names"),
        never_names=lower("never_names"),
        drug_stems=tuple(sorted(w.lower() for w in _words(data, "drug_stems", "names"))),
        initials_regex=str(data["initials_regex"]),
        eponym_nouns=lower("eponym_nouns"),
        relations=lower("relations"),
        kin_after_possessive=lower("kin_after_possessive"),
        vocative_next=lower("vocative_next"),
        id_labels=lower("id_labels"),
        surname_particles=lower("surname_particles"),
        first_names=_read_names(HERE / "names_first.csv"),
        last_names=_read_names(HERE / "names_last.csv"),
    )


def _parse_places(data: dict[str, Any]) -> PlaceRules:
    def words(key: str) -> frozenset[str]:
        return frozenset(_words(data, key, "places"))

    return PlaceRules(
        countries=words("countries"),
        cities=words("cities"),
        ambiguous=words("ambiguous"),
        towns=_read_names(HERE / "places_us_towns.csv"),
        states=tuple(_words(data, "us_states", "places")),
    )


def load_config(
    path: Path | None = None, names_path: Path | None = None, places_path: Path | None = None
) -> DeidConfig:
    """Read and validate a configuration; ``None`` means the bundled defaults."""
    data = yaml.safe_load((path or DEFAULT_CONFIG).read_text(encoding="utf-8"))
    names = yaml.safe_load((names_path or DEFAULT_NAMES).read_text(encoding="utf-8"))
    places = yaml.safe_load((places_path or DEFAULT_PLACES).read_text(encoding="utf-8"))
    labels = tuple(data["labels"])
    operators = {str(k): str(v) for k, v in data["operators"].items()}
    if "default" not in operators:
        raise DeidConfigError("operators: a 'default' entry is required")
    for label, op in operators.items():
        if label != "default" and label not in labels:
            raise DeidConfigError(f"operators: unknown label '{label}'")
        if op not in OPERATORS:
            raise DeidConfigError(f"operators: '{op}' for {label} is not one of {list(OPERATORS)}")
    spacy_cfg = data["spacy"]
    place_rules = _parse_places(places)
    fragments = {k: str(v) for k, v in data["fragments"].items()}
    fragments["STATE_NAME"] = "(?:" + "|".join(place_rules.states) + ")"
    entity_map = {str(k): str(v) for k, v in spacy_cfg["entity_map"].items()}
    unknown = set(entity_map.values()) - set(labels)
    if unknown:
        raise DeidConfigError(f"spacy.entity_map: unknown label(s) {sorted(unknown)}")
    return DeidConfig(
        labels=labels,
        spacy_model=str(spacy_cfg["model"]),
        spacy_disable=tuple(spacy_cfg.get("disable", ())),
        batch_size=int(spacy_cfg.get("batch_size", 16)),
        entity_map=entity_map,
        spacy_score=float(spacy_cfg.get("score", 0.55)),
        score_threshold=float(data.get("score_threshold", 0.5)),
        operators=operators,
        date_shift_max_days=int(data.get("date_shift_max_days", 365)),
        patterns=_parse_patterns(data["patterns"], labels, fragments),
        strip_leading_words=frozenset(_words(data, "strip_leading_words", "deid")),
        generic_facility_words=frozenset(w.lower() for w in _words(data, "generic_facility_words", "deid")),
        never_flag=frozenset(w.lower() for w in _words(data, "never_flag", "deid")),
        text_source_kinds=frozenset(data.get("text_source_kinds", ())),
        extra_keep_keys=frozenset(data.get("extra_keep_keys", ())),
        names=_parse_names(names),
        places=place_rules,
    )


@lru_cache(maxsize=1)
def default_config() -> DeidConfig:
    return load_config()

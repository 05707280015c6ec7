"""The curate steps' configuration: defaults as data (filters.yaml), overrides from the corpus spec, checked.

The spec only carries mappings (``quality.filters``, ``quality.dedup``, ``quality.decontamination``); this
module turns them into typed, validated settings so that a typo names the key instead of being ignored, and
every step reads its thresholds from one place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from medcurate.core.names import SOURCE_KINDS
from medcurate.core.spec import CorpusSpec, SpecError

FILTERS_FILE = Path(__file__).with_name("filters.yaml")
BOILERPLATE_FILE = Path(__file__).with_name("boilerplate.yaml")


@dataclass(frozen=True)
class FilterThresholds:
    """One source kind's filter thresholds; filters.yaml explains each key."""

    min_chars: int
    max_chars: int
    min_content_chars: int
    max_placeholder_fraction: float
    max_symbol_ratio: float
    max_digit_ratio: float
    max_non_letter_ratio: float
    max_duplicate_line_fraction: float
    strip_boilerplate: bool
    repair_mojibake: bool
    languages: tuple[str, ...]
    min_language_chars: int
    min_language_confidence: float


@dataclass(frozen=True)
class DedupConfig:
    # Share of words two documents have in common, in order, at or above which they are near-duplicates: the
    # longest common subsequence of their words over the longer one's word count (word_similarity.py).
    # 0.8: 10% of the words changed (values included) is a near-duplicate, 20% is the limit.
    near_threshold: float = 0.8
    # MinHash LSH over shingles of this many words, numbers masked, proposes the candidate pairs to verify.
    num_perm: int = 128
    shingle_words: int = 5
    seed: int = 1
    # Copy-forward: paragraphs shorter than this are not compared (a repeated "Plan:" is not copied text).
    copy_forward_min_paragraph_chars: int = 40
    # A note keeps its new paragraphs only when at least this many characters of them remain.
    copy_forward_min_remaining_chars: int = 40
    copy_forward_doc_types: tuple[str, ...] = ("clinical_note", "diagnostic_report", "observation_report")


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: Path


@dataclass(frozen=True)
class CurationConfig:
    filters: dict[str, FilterThresholds]
    dedup: DedupConfig
    benchmarks: tuple[Benchmark, ...]
    decontamination_ngram: int
    max_source_drop: float


_THRESHOLD_KEYS = {f.name for f in fields(FilterThresholds)}


@cache
def _default_filters() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(FILTERS_FILE.read_text(encoding="utf-8"))
    return {kind: dict(values) for kind, values in data["kinds"].items()}


@cache
def boilerplate_patterns() -> tuple[str, ...]:
    return tuple(yaml.safe_load(BOILERPLATE_FILE.read_text(encoding="utf-8"))["patterns"])


def _thresholds(kind: str, overrides: dict[str, Any], where: str) -> FilterThresholds:
    values = {**_default_filters()[kind], **overrides}
    unknown = set(values) - _THRESHOLD_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_THRESHOLD_KEYS)}")
    values["languages"] = tuple(str(code) for code in values.get("languages") or ())
    thresholds = FilterThresholds(**values)
    for name in ("max_placeholder_fraction", "max_symbol_ratio", "max_digit_ratio", "max_non_letter_ratio"):
        if not 0.0 <= float(getattr(thresholds, name)) <= 1.0:
            raise SpecError(f"{where}: {name} must be a fraction between 0 and 1")
    if thresholds.min_chars > thresholds.max_chars:
        raise SpecError(f"{where}: min_chars is above max_chars")
    return thresholds


def _filters(spec: CorpusSpec) -> dict[str, FilterThresholds]:
    overrides = spec.quality.filters or {}
    unknown = set(overrides) - set(SOURCE_KINDS) - {"default"}
    if unknown:
        raise SpecError(f"quality.filters: unknown source kind(s) {sorted(unknown)}; use one of {list(SOURCE_KINDS)}")
    common = overrides.get("default") or {}
    return {
        kind: _thresholds(kind, {**common, **(overrides.get(kind) or {})}, f"quality.filters.{kind}")
        for kind in SOURCE_KINDS
    }


def _dedup(spec: CorpusSpec) -> DedupConfig:
    data = dict(spec.quality.dedup or {})
    allowed = {f.name for f in fields(DedupConfig)}
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"quality.dedup: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if "copy_forward_doc_types" in data:
        data["copy_forward_doc_types"] = tuple(data["copy_forward_doc_types"])
    config = DedupConfig(**data)
    if not 0.0 < config.near_threshold <= 1.0:
        raise SpecError("quality.dedup.near_threshold must be in (0, 1]")
    if config.num_perm < 16 or config.shingle_words < 1:
        raise SpecError("quality.dedup: num_perm must be >= 16 and shingle_words >= 1")
    return config


def _benchmarks(spec: CorpusSpec) -> tuple[Benchmark, ...]:
    found = []
    for index, item in enumerate(spec.quality.decontamination or []):
        where = f"quality.decontamination[{index}]"
        if not isinstance(item, dict) or set(item) != {"name", "path"}:
            raise SpecError(f"{where}: expected a mapping with exactly the keys 'name' and 'path'")
        path = spec.resolve(str(item["path"]))
        if not path.is_file():
            raise SpecError(f"{where}: benchmark file not found: {path}")
        found.append(Benchmark(name=str(item["name"]), path=path))
    names = [b.name for b in found]
    if len(set(names)) != len(names):
        raise SpecError("quality.decontamination: benchmark names must be unique")
    return tuple(found)


def curation_config(spec: CorpusSpec) -> CurationConfig:
    """The validated curate settings of ``spec``; raises ``SpecError`` naming the offending key."""
    if spec.quality.decontamination_ngram < 5:
        raise SpecError("quality.decontamination_ngram must be at least 5 words")
    if not 0.0 <= spec.quality.max_source_drop <= 1.0:
        raise SpecError("quality.max_source_drop must be a fraction between 0 and 1")
    return CurationConfig(
        filters=_filters(spec),
        dedup=_dedup(spec),
        benchmarks=_benchmarks(spec),
        decontamination_ngram=spec.quality.decontamination_ngram,
        max_source_drop=spec.quality.max_source_drop,
    )

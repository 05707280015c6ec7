"""The corpus spec: one YAML file that says what goes into a corpus and how it is cut into shards.

Only ``sources`` is required; every other key has a default chosen for clinical text.  Relative paths
(source globs, the data root, a tokenizer file) are resolved against the directory of the spec file, so a
spec and its inputs can be moved together.  Loading validates everything up front: a typo must fail the run
before any stage has written a byte.  A source name becomes a directory name in every zone, so it must be a
plain identifier; a source's globs must stay inside the spec's folder unless it says ``allow_outside: true``
(``medcurate/core/listing.py`` applies the same rule to symlinks).

The pydantic models are the one definition of the spec: they validate it, their errors become the one-line
``SpecError`` the CLI prints (key, problem, value), and ``spec_json_schema`` publishes the same rules as JSON
Schema, which the Airflow params reuse (``medcurate.airflow_support``).  This module imports neither pyarrow
nor Airflow: DAG files import it at parse time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from medcurate.core.names import LEGAL_BASES, SOURCE_KINDS

# A source name is a directory name in raw/, deid/, quarantine/...: nothing that could climb out of them.
SOURCE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
# A path or URI as a param or spec value may hold it: printable, no control characters.
LOCATION_PATTERN = r"^[^\x00-\x1f\x7f]+$"


# What a value that fails one of the patterns above is, in words (a regex is no message).
PATTERN_MEANINGS = {
    SOURCE_NAME_PATTERN: "is not a plain identifier (letters, digits, '_', '.', '-'; at most 64; no '..')",
    LOCATION_PATTERN: "holds a control character",
}


class SpecError(ValueError):
    """The spec is invalid; the message names the key and what is wrong with it."""


def _none_as_empty(value: Any) -> Any:
    """YAML writes an empty section (``tokenizer:``) as null: it means "all defaults"."""
    return {} if value is None else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class _Section(BaseModel):
    # Unknown keys are typos; numbers written where text is expected (a licence "2026") are kept as text.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


SourceKind = Literal[SOURCE_KINDS]  # type: ignore[valid-type]
LegalBasis = Literal[LEGAL_BASES]  # type: ignore[valid-type]


class SourceSpec(_Section):
    name: str = Field(pattern=SOURCE_NAME_PATTERN, description="unique plain identifier; a directory in every zone")
    kind: SourceKind
    paths: Annotated[tuple[str, ...], BeforeValidator(_one_or_many)] = Field(
        min_length=1, description="globs (** allowed), relative to the spec's folder"
    )
    license: str = Field(min_length=1)
    legal_basis: LegalBasis
    owner: str = "unknown"
    # Parser options for this kind (e.g. the CSV column mapping for notes_csv, caps under `limits`).
    options: Annotated[dict[str, Any], BeforeValidator(_none_as_empty)] = {}
    # Globs and symlinks may reach outside the spec's folder only when this is true (medcurate/core/listing.py).
    allow_outside: StrictBool = False
    # A source whose globs match no file fails the run, unless it is optional (e.g. a feed not always delivered).
    optional: StrictBool = False

    @field_validator("name")
    @classmethod
    def _no_parent_reference(cls, name: str) -> str:
        if ".." in name:
            raise ValueError(f"{name!r} {PATTERN_MEANINGS[SOURCE_NAME_PATTERN]}")
        return name

    @model_validator(mode="after")
    def _globs_inside_the_spec_folder(self, info: ValidationInfo) -> SourceSpec:
        base_dir = (info.context or {}).get("base_dir")
        if base_dir is not None and not self.allow_outside:
            for pattern in self.paths:
                _check_pattern(pattern, Path(base_dir))
        return self


class TokenizerSpec(_Section):
    # A HF tokenizer.json to use as is; when null a byte-level BPE is trained on the curated text.
    path: str | None = None
    vocab_size: int = Field(8192, ge=1)
    add_bos: StrictBool = True
    add_eos: StrictBool = True


class QualitySpec(_Section):
    min_chars: int = Field(20, ge=0)
    max_chars: int = Field(2_000_000, ge=1)
    # Per source kind (or "default" for every kind), overrides of the curate filters' thresholds; the keys and
    # their clinical / literature defaults are in pipelines/quality/filters.yaml and checked when curate starts.
    filters: Annotated[dict[str, dict[str, Any]], BeforeValidator(_none_as_empty)] = {}
    # Deduplication knobs (near_threshold, num_perm, shingle_words, copy-forward paragraph sizes).
    dedup: Annotated[dict[str, Any], BeforeValidator(_none_as_empty)] = {}
    # Evaluation sets to keep out of the corpus: [{name, path}], each path a JSONL of question/answer/context.
    decontamination: list[dict[str, Any]] = []
    decontamination_ngram: int = Field(13, ge=1)
    # A source whose curated count falls by more than this fraction from the previous run fails the batch.
    max_source_drop: float = Field(0.5, ge=0.0, le=1.0)


class ShardSpec(_Section):
    # "packed": fixed seq_len sequences across documents, document boundaries kept.
    mode: Literal["documents", "packed"] = "documents"
    target_shard_bytes: int = Field(256 * 1024 * 1024, ge=1)
    # Source name -> sampling weight for the train split (missing sources: 1.0).  0.5 keeps a hashed half of
    # the source's documents, 2.0 writes each twice, 1.3 every document once and a hashed 30% a second time.
    mixing: Annotated[dict[str, float], BeforeValidator(_none_as_empty)] = {}

    @field_validator("mixing")
    @classmethod
    def _finite_weights(cls, mixing: dict[str, float]) -> dict[str, float]:
        bad = sorted(name for name, weight in mixing.items() if not (0.0 <= weight and math.isfinite(weight)))
        if bad:
            raise ValueError(f"weights must be finite and >= 0; check {bad}")
        return mixing


class ParallelSpec(_Section):
    """How the Ray stages (deid, curate's cleaning pass, shard) cut their work, never what they write.

    The output is the same for any value (``tests/test_batch_invariance.py``), so ``config_hash()`` leaves
    this section out: raising ``workers`` on a bigger cluster neither changes a manifest nor restarts a
    resumable shard build.
    """

    # Documents per Ray call: texts per de-identification call, curated rows per tokenization call; and the
    # documents curate holds at a time. null: each stage's default (64 texts, 1024 rows, 2048 documents).
    batch_docs: int | None = Field(None, ge=1)
    # Actors per stage; null: one per CPU of the Ray cluster.  With one, curate's cleaning pass and the shard
    # build run their work in the driver instead, without Ray (``medcurate/core/actor_pool.py``).
    workers: int | None = Field(None, ge=1)


def _default_splits() -> dict[str, float]:
    return {"train": 0.9, "validation": 0.05, "test": 0.05}


class CorpusSpec(_Section):
    # Non-empty; checked by a validator, as pydantic's min_length adds an error to a list with a bad item.
    sources: tuple[SourceSpec, ...] = Field(json_schema_extra={"minItems": 1})
    name: str = "medical-corpus"
    data_root: str = Field("data", pattern=LOCATION_PATTERN, max_length=4096)
    tokenizer: Annotated[TokenizerSpec, BeforeValidator(_none_as_empty)] = TokenizerSpec()
    seq_len: int = Field(2048, ge=16)
    splits: dict[str, float] = Field(default_factory=_default_splits)
    quality: Annotated[QualitySpec, BeforeValidator(_none_as_empty)] = QualitySpec()
    shard: Annotated[ShardSpec, BeforeValidator(_none_as_empty)] = ShardSpec()
    parallel: Annotated[ParallelSpec, BeforeValidator(_none_as_empty)] = ParallelSpec()
    # Directory the spec was read from; relative paths resolve against it.  Set by loading, never in the YAML.
    base_dir: SkipJsonSchema[Path] = Path(".")

    @field_validator("sources")
    @classmethod
    def _at_least_one_source(cls, sources: tuple[SourceSpec, ...]) -> tuple[SourceSpec, ...]:
        if not sources:
            raise ValueError("must be a non-empty list")
        return sources

    @field_validator("splits")
    @classmethod
    def _splits_sum_to_one(cls, splits: dict[str, float]) -> dict[str, float]:
        if not splits or any(v < 0 for v in splits.values()) or abs(sum(splits.values()) - 1.0) > 1e-6:
            raise ValueError(f"must be non-negative fractions that sum to 1, got {splits}")
        return splits

    @model_validator(mode="after")
    def _source_names_are_unique_and_known(self) -> CorpusSpec:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique; repeated: {duplicates}")
        unknown = sorted(set(self.shard.mixing) - set(names))
        if unknown:
            raise ValueError(f"shard.mixing names unknown source(s) {unknown}; the spec's sources: {names}")
        return self

    def source(self, name: str) -> SourceSpec:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def config_hash(self) -> str:
        """sha256 of the spec's content (not its location, nor ``parallel``, which changes no output): recorded
        in manifests and audit events."""
        data = self.model_dump(mode="json", exclude={"base_dir", "parallel"})
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def spec_json_schema() -> dict[str, Any]:
    """The corpus spec as JSON Schema (draft 2020-12): for editors, and the source of the DAG params' rules."""
    return CorpusSpec.model_json_schema()


def _check_pattern(pattern: str, base_dir: Path) -> None:
    """A glob must stay inside the spec's folder: normalised, it starts there, and no '..' follows a wildcard."""
    parts = Path(pattern).parts
    wild = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
    folder = os.path.normpath(base_dir.resolve())
    fixed = os.path.normpath(os.path.join(folder, *parts[:wild]))
    if ".." in parts[wild:] or os.path.commonpath([folder, fixed]) != folder:
        raise ValueError(f"path {pattern!r} reaches outside the spec's folder; set allow_outside: true to allow it")


def _where(loc: tuple[int | str, ...], data: Any) -> str:
    """An error's location as the spec's author reads it: ``source 'notes'.paths``, ``shard.mode``."""
    words: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) and i == 1 and loc[0] == "sources":
            raw = data["sources"][part] if isinstance(data, dict) else None
            name = raw.get("name") if isinstance(raw, dict) else None
            plain = isinstance(name, str) and re.fullmatch(SOURCE_NAME_PATTERN, name) and ".." not in name
            words[-1] = f"source '{name}'" if plain else f"sources[{part}]"
        elif isinstance(part, int):
            words[-1] += f"[{part}]"
        else:
            words.append(str(part))
    return ".".join(words)


def _one_line(error: Any, data: Any) -> str:
    """One pydantic error as one line: where, what is wrong, and the offending value (repr: no raw newline)."""
    loc = tuple(error["loc"])
    where = _where(loc, data)
    kind = error["type"]
    if kind == "missing":
        parent = _where(loc[:-1], data)
        return f"{parent + ': ' if parent else ''}missing required key '{loc[-1]}'"
    if kind == "extra_forbidden":
        parent = _where(loc[:-1], data)
        return f"{parent + ': ' if parent else 'top-level: '}unknown key '{loc[-1]}'"
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] in PATTERN_MEANINGS:
        return f"{where}: {error['input']!r} {PATTERN_MEANINGS[error['ctx']['pattern']]}"
    if kind == "literal_error":
        return f"{where}: {error['input']!r} is not one of {error['ctx']['expected']}"
    message = error["msg"].removeprefix("Value error, ")
    if kind.startswith("value_error") or kind == "assertion_error":
        return f"{where}: {message}" if where else message
    return f"{where}: {message[0].lower()}{message[1:]}, got {error['input']!r}"


def parse_spec(data: Any, base_dir: Path) -> CorpusSpec:
    if not isinstance(data, dict):
        raise SpecError("the spec must be a YAML mapping with at least a 'sources' list")
    if "base_dir" in data:
        raise SpecError("top-level: unknown key 'base_dir'")
    try:
        return CorpusSpec.model_validate({**data, "base_dir": base_dir.resolve()}, context={"base_dir": base_dir})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = _one_line(errors[0], data)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SpecError(first + more) from None


def load_spec(path: str | Path) -> CorpusSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise SpecError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_spec(data, path.parent)

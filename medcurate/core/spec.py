"""The corpus spec: one YAML file that says what goes into a corpus and how it is cut into shards.

Only ``sources`` is required; every other key has a default chosen for clinical text.  Relative paths
(source globs, the data root, a tokenizer file) are resolved against the directory of the spec file, so a
spec and its inputs can be moved together.  Loading validates everything up front: a typo must fail the run
before any stage has written a byte.  A source name becomes a directory name in every zone, so it must be a
plain identifier; a source's globs must stay inside the spec's folder unless it says ``allow_outside: true``
(``medcurate/core/listing.py`` applies the same rule to symlinks).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medcurate.core.names import SOURCE_KINDS
from medcurate.core.schema import LEGAL_BASES

# A source name is a directory name in raw/, deid/, quarantine/...: nothing that could climb out of them.
SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class SpecError(ValueError):
    """The spec is invalid; the message names the key and what is wrong with it."""


@dataclass(frozen=True)
class SourceSpec:
    name: str
    kind: str
    paths: tuple[str, ...]
    license: str
    legal_basis: str
    owner: str = "unknown"
    # Parser options for this kind (e.g. the CSV column mapping for notes_csv, caps under `limits`).
    options: dict[str, Any] = field(default_factory=dict)
    # Globs and symlinks may reach outside the spec's folder only when this is true (medcurate/core/listing.py).
    allow_outside: bool = False


@dataclass(frozen=True)
class TokenizerSpec:
    # A HF tokenizer.json to use as is; when null a byte-level BPE is trained on the curated text.
    path: str | None = None
    vocab_size: int = 8192
    add_bos: bool = True
    add_eos: bool = True


@dataclass(frozen=True)
class QualitySpec:
    min_chars: int = 20
    max_chars: int = 2_000_000
    # Per source kind (or "default" for every kind), overrides of the curate filters' thresholds; the keys and
    # their clinical / literature defaults are in pipelines/quality/filters.yaml and checked when curate starts.
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Deduplication knobs (near_threshold, num_perm, shingle_words, copy-forward paragraph sizes).
    dedup: dict[str, Any] = field(default_factory=dict)
    # Evaluation sets to keep out of the corpus: [{name, path}], each path a JSONL of question/answer/context.
    decontamination: list[dict[str, Any]] = field(default_factory=list)
    decontamination_ngram: int = 13
    # A source whose curated count falls by more than this fraction from the previous run fails the batch.
    max_source_drop: float = 0.5


@dataclass(frozen=True)
class ShardSpec:
    mode: str = "documents"  # or "packed": fixed seq_len sequences across documents, boundaries kept
    target_shard_bytes: int = 256 * 1024 * 1024
    # Source name -> sampling weight for the train split (missing sources: 1.0).  0.5 keeps a hashed half of
    # the source's documents, 2.0 writes each twice, 1.3 every document once and a hashed 30% a second time.
    mixing: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.mixing, dict):
            raise SpecError("shard.mixing must be a mapping of source name to weight")
        try:
            weights = {str(name): float(weight) for name, weight in self.mixing.items()}
        except (TypeError, ValueError):
            raise SpecError("shard.mixing: every weight must be a number") from None
        bad = sorted(name for name, weight in weights.items() if not 0.0 <= weight < float("inf"))
        if bad:
            raise SpecError(f"shard.mixing: weights must be finite and >= 0; check {bad}")
        object.__setattr__(self, "mixing", weights)


@dataclass(frozen=True)
class CorpusSpec:
    sources: tuple[SourceSpec, ...]
    name: str = "medical-corpus"
    data_root: str = "data"
    tokenizer: TokenizerSpec = TokenizerSpec()
    seq_len: int = 2048
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05})
    quality: QualitySpec = QualitySpec()
    shard: ShardSpec = ShardSpec()
    # Directory the spec was read from; relative paths resolve against it.
    base_dir: Path = Path(".")

    def source(self, name: str) -> SourceSpec:
        for src in self.sources:
            if src.name == name:
                return src
        raise KeyError(name)

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def config_hash(self) -> str:
        """sha256 of the spec's content (not its location): recorded in manifests and audit events."""
        data = asdict(self)
        data.pop("base_dir")
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] in (None, ""):
        raise SpecError(f"{where}: missing required key '{key}'")
    return mapping[key]


def _dataclass_from(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(data).__name__}")
    allowed = set(cls.__dataclass_fields__)
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return cls(**data)


def _check_name(name: str) -> None:
    """A source name becomes a directory name in every zone: only a plain identifier may."""
    if not SOURCE_NAME.fullmatch(name) or ".." in name:
        raise SpecError(f"source name {name!r} is not a plain identifier (letters, digits, '_', '.', '-'; no '..')")


def _check_pattern(pattern: str, base_dir: Path, where: str) -> None:
    """A glob must stay inside the spec's folder: normalised, it starts there, and no '..' follows a wildcard."""
    parts = Path(pattern).parts
    wild = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts))
    folder = os.path.normpath(base_dir.resolve())
    fixed = os.path.normpath(os.path.join(folder, *parts[:wild]))
    if ".." in parts[wild:] or os.path.commonpath([folder, fixed]) != folder:
        raise SpecError(
            f"{where}: path {pattern!r} reaches outside the spec's folder; set allow_outside: true to allow it"
        )


def _parse_source(raw: Any, index: int, base_dir: Path) -> SourceSpec:
    where = f"sources[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping")
    allowed = set(SourceSpec.__dataclass_fields__)
    unknown = set(raw) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    name = str(_require(raw, "name", where))
    _check_name(name)
    where = f"source '{name}'"
    kind = _require(raw, "kind", where)
    if kind not in SOURCE_KINDS:
        raise SpecError(f"{where}: kind '{kind}' is not one of {list(SOURCE_KINDS)}")
    paths = _require(raw, "paths", where)
    if isinstance(paths, str):
        paths = [paths]
    legal_basis = _require(raw, "legal_basis", where)
    if legal_basis not in LEGAL_BASES:
        raise SpecError(f"{where}: legal_basis '{legal_basis}' is not one of {list(LEGAL_BASES)}")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise SpecError(f"{where}: options must be a mapping")
    allow_outside = raw.get("allow_outside", False)
    if not isinstance(allow_outside, bool):
        raise SpecError(f"{where}: allow_outside must be true or false")
    if not allow_outside:
        for pattern in paths:
            _check_pattern(str(pattern), base_dir, where)
    return SourceSpec(
        name=name,
        kind=kind,
        paths=tuple(str(p) for p in paths),
        license=str(_require(raw, "license", where)),
        legal_basis=legal_basis,
        owner=str(raw.get("owner", "unknown")),
        options=options,
        allow_outside=allow_outside,
    )


def parse_spec(data: Any, base_dir: Path) -> CorpusSpec:
    if not isinstance(data, dict):
        raise SpecError("the spec must be a YAML mapping with at least a 'sources' list")
    allowed = set(CorpusSpec.__dataclass_fields__) - {"base_dir"}
    unknown = set(data) - allowed
    if unknown:
        raise SpecError(f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    raw_sources = data.get("sources")
    if not isinstance(raw_sources, list) or not raw_sources:
        raise SpecError("'sources' must be a non-empty list")
    sources = tuple(_parse_source(s, i, base_dir) for i, s in enumerate(raw_sources))
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"source names must be unique; repeated: {duplicates}")

    kwargs: dict[str, Any] = {"sources": sources, "base_dir": base_dir.resolve()}
    for key in ("name", "data_root"):
        if key in data:
            kwargs[key] = str(data[key])
    if "seq_len" in data:
        kwargs["seq_len"] = int(data["seq_len"])
        if kwargs["seq_len"] < 16:
            raise SpecError("seq_len must be at least 16")
    if "splits" in data:
        splits = {str(k): float(v) for k, v in (data["splits"] or {}).items()}
        if not splits or any(v < 0 for v in splits.values()) or abs(sum(splits.values()) - 1.0) > 1e-6:
            raise SpecError(f"splits must be non-negative fractions that sum to 1, got {splits}")
        kwargs["splits"] = splits
    kwargs["tokenizer"] = _dataclass_from(TokenizerSpec, data.get("tokenizer"), "tokenizer")
    kwargs["quality"] = _dataclass_from(QualitySpec, data.get("quality"), "quality")
    kwargs["shard"] = _dataclass_from(ShardSpec, data.get("shard"), "shard")
    if kwargs["shard"].mode not in ("documents", "packed"):
        raise SpecError(f"shard.mode must be 'documents' or 'packed', got '{kwargs['shard'].mode}'")
    return CorpusSpec(**kwargs)


def load_spec(path: str | Path) -> CorpusSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return parse_spec(data, path.parent)

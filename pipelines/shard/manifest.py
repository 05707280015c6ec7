"""``shards/manifest.json``: what a trainer needs to trust and use a shard set without opening it.

The manifest is a pure function of the shards, the tokenizer, the spec and the run id: no timestamps, keys
sorted, fixed indentation.  Two builds of the same curated data with the same spec and run id are
byte-identical; the run id is recorded (not hashed into anything) so a build can be traced to its run.
"""

from __future__ import annotations

from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

from medcurate.core.hashing import merkle_root
from medcurate.core.spec import CorpusSpec
from pipelines.shard.mixing import DEFAULT_WEIGHT, MIXED_SPLIT
from pipelines.shard.progress import ShardFile, write_json_atomic
from pipelines.shard.tokenizer import TokenizerInfo

MANIFEST_VERSION = 1
MERKLE_CONSTRUCTION = (
    "RFC 6962 Merkle tree hash (SHA-256) over the raw sha256 digests of the shard files sorted by path"
)


def code_version() -> str:
    """The installed medcurate version, so a shard set can be traced to the code that built it."""
    try:
        return metadata.version("medcurate")
    except metadata.PackageNotFoundError:
        return "unknown (medcurate not installed)"


def _totals(shards: list[ShardFile]) -> dict[str, Any]:
    by_split: dict[str, Counter[str]] = {}
    docs_by_source: Counter[str] = Counter()
    tokens_by_source: Counter[str] = Counter()
    for shard in shards:
        split = by_split.setdefault(shard.split, Counter())
        split["rows"] += shard.rows
        split["documents"] += shard.documents
        split["tokens"] += shard.tokens
        docs_by_source.update(shard.documents_by_source)
        tokens_by_source.update(shard.tokens_by_source)
    return {
        "rows": sum(s.rows for s in shards),
        "documents": sum(s.documents for s in shards),
        "tokens": sum(s.tokens for s in shards),
        "by_split": {name: dict(counts) for name, counts in by_split.items()},
        "by_source": {
            source: {"documents": docs_by_source[source], "tokens": tokens_by_source[source]}
            for source in docs_by_source
        },
    }


def source_terms(spec: CorpusSpec) -> dict[str, dict[str, str]]:
    """Per source, the terms its documents were collected under: a trainer must not need the spec to know them."""
    return {
        source.name: {
            "kind": source.kind,
            "license": source.license,
            "legal_basis": source.legal_basis,
            "owner": source.owner,
        }
        for source in sorted(spec.sources, key=lambda s: s.name)
    }


def build_manifest(
    *,
    spec: CorpusSpec,
    run_id: str,
    root: Path,
    shards: list[ShardFile],
    tokenizer: TokenizerInfo,
    token_dtype: str,
    inputs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest as a dict; shard and tokenizer paths are relative to ``root`` (the shards directory).

    ``inputs`` are the curated files read (path relative to the curated zone, sha256, bytes).  ``rows`` are
    documents in mode ``documents`` and sequences in mode ``packed``; ``documents`` count mixing copies.
    """
    entries = sorted(
        (
            {
                "path": shard.path.relative_to(root).as_posix(),
                "split": shard.split,
                "sha256": shard.sha256,
                "rows": shard.rows,
                "documents": shard.documents,
                "tokens": shard.tokens,
                "documents_by_source": shard.documents_by_source,
                "tokens_by_source": shard.tokens_by_source,
            }
            for shard in shards
        ),
        key=lambda entry: entry["path"],
    )
    return {
        "manifest_version": MANIFEST_VERSION,
        "corpus": spec.name,
        "mode": spec.shard.mode,
        "seq_len": spec.seq_len if spec.shard.mode == "packed" else None,
        "mixing": {"weights": spec.shard.mixing, "applies_to": MIXED_SPLIT, "default_weight": DEFAULT_WEIGHT},
        "inputs": inputs,
        "sources": source_terms(spec),
        "run_id": run_id,
        "code_version": code_version(),
        "spec_config_hash": spec.config_hash(),
        "splits": {name: {"fraction": fraction, "path": name} for name, fraction in spec.splits.items()},
        "token_dtype": token_dtype,
        "tokenizer": {
            "path": tokenizer.path.relative_to(root).as_posix(),
            "sha256": tokenizer.sha256,
            "vocab_size": tokenizer.vocab_size,
            "bos_id": tokenizer.bos_id,
            "eos_id": tokenizer.eos_id,
            "pad_id": tokenizer.pad_id,
        },
        "shards": entries,
        "totals": _totals(shards),
        "merkle": {
            "construction": MERKLE_CONSTRUCTION,
            "root": merkle_root({entry["path"]: entry["sha256"] for entry in entries}),
        },
    }


def write_manifest(manifest: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(manifest, path)

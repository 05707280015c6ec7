"""The files beside the shards that let a trainer load and trust them with their own tools, no medcurate needed.

* ``dataset_dict.json``: ``datasets.load_from_disk("shards")`` returns a ``DatasetDict`` of the splits;
* ``tokenizer/tokenizer_config.json`` and ``special_tokens_map.json`` next to ``tokenizer.json``:
  ``transformers.AutoTokenizer.from_pretrained("shards/tokenizer")`` loads the tokenizer the ids were made with;
* ``README.md``: the Hugging Face dataset card (``dataset_card.py``);
* ``croissant.json``: MLCommons Croissant metadata with the RAI fields (``croissant.py``).

They are functions of the spec, the manifest and the stage reports, so the shard stage writes them at build
time and an erasure (which rewrites shards and manifest) rewrites them from the new manifest.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from tokenizers import Tokenizer

from medcurate.core.context import RunContext, StageReport, load_stage_reports
from medcurate.core.spec import CorpusSpec
from medcurate.core.zones import write_text_atomic
from pipelines.shard.croissant import build_croissant
from pipelines.shard.dataset_card import render_card
from pipelines.shard.hf_layout import write_dataset_dict
from pipelines.shard.tokenizer import BOS, EOS, PAD


@cache
def card_settings() -> dict[str, Any]:
    """``card.yaml``: the card's and Croissant's wording, licence identifiers and clinical source kinds."""
    return yaml.safe_load(resources.files(__package__).joinpath("card.yaml").read_text(encoding="utf-8"))


def dataset_license(spec: CorpusSpec) -> str:
    """Every source's licence and legal basis in one line: the corpus is bound by all of them at once."""
    return "; ".join(f"{s.name}: {s.license} ({s.legal_basis})" for s in sorted(spec.sources, key=lambda s: s.name))


def dataset_citation(spec: CorpusSpec) -> str:
    """A BibTeX entry naming the corpus and the spec it was built from (its config hash pins the recipe)."""
    key = "".join(c if c.isalnum() else "_" for c in spec.name)
    return (
        f"@misc{{{key},\n  title = {{{spec.name}}},\n"
        f"  note = {{De-identified medical text built by medcurate from corpus spec {spec.config_hash()[:16]}}}\n}}"
    )


def documents_by_split_and_source(manifest: dict[str, Any]) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {split: Counter() for split in manifest["splits"]}
    for shard in manifest["shards"]:
        counts[shard["split"]].update(shard["documents_by_source"])
    return counts


def split_warnings(spec: CorpusSpec, manifest: dict[str, Any]) -> list[str]:
    """One line per split that holds no clinical document: it cannot train or evaluate on patient text."""
    clinical = {s.name for s in spec.sources if s.kind in card_settings()["clinical_kinds"]}
    warnings = []
    for split, by_source in documents_by_split_and_source(manifest).items():
        if not any(by_source[source] for source in clinical):
            total = sum(by_source.values())
            origin = ", all from literature sources" if total else ""
            warnings.append(f"split '{split}' holds no clinical patient ({total} documents{origin})")
    return warnings


def tokenizer_config(tokenizer_json: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """``tokenizer_config.json`` and ``special_tokens_map.json`` for the tokenizer at ``tokenizer_json``.

    Only the special tokens the tokenizer knows are named: a given tokenizer may lack ``<|pad|>``.  The class
    is the generic fast tokenizer, which reads ``tokenizer.json`` as is, so ids match the shards exactly.
    """
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    special = {
        role: token
        for role, token in (("bos_token", BOS), ("eos_token", EOS), ("pad_token", PAD))
        if tokenizer.token_to_id(token) is not None
    }
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **special}
    return config, special


def write_trainer_files(ctx: RunContext, root: Path, manifest: dict[str, Any], shard_report: StageReport) -> None:
    """Write the trainer's files under ``root`` (the shards directory being built, or the published one).

    Splits are listed in spec order (train first), not in the manifest's sorted key order.
    """
    order = [split for split in ctx.spec.splits if split in manifest["splits"]]
    order += sorted(set(manifest["splits"]) - set(order))
    manifest = {**manifest, "splits": {split: manifest["splits"][split] for split in order}}
    write_dataset_dict(root, list(manifest["splits"]))
    tokenizer_json = root / manifest["tokenizer"]["path"]
    config, special = tokenizer_config(tokenizer_json)
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        write_text_atomic(tokenizer_json.parent / name, json.dumps(content, indent=2, sort_keys=True) + "\n")
    reports = {**load_stage_reports(ctx.zones), shard_report.stage: shard_report}
    settings = card_settings()
    warnings = split_warnings(ctx.spec, manifest)
    citation = dataset_citation(ctx.spec)
    write_text_atomic(root / "README.md", render_card(ctx.spec, manifest, reports, settings, warnings, citation))
    croissant = build_croissant(ctx.spec, manifest, root, settings, dataset_license(ctx.spec), citation)
    write_text_atomic(root / "croissant.json", json.dumps(croissant, indent=2) + "\n")

"""``shards/README.md``: the Hugging Face dataset card, i.e. the datasheet a trainer reads before training.

The YAML header is what the Hub and ``huggingface_hub.DatasetCard`` read (licence, language, task, size,
source datasets, one config whose ``data_files`` name each split's Arrow files); the body states the sources
with their licences and legal bases, what each stage removed and why, how PHI was removed, the uses and the
PHI policy.  Every figure comes from the manifest or a stage report; wording comes from ``card.yaml``.  The
measured de-identification figures are not copied here: they are kept, with the data they were measured on,
in the document ``card.yaml`` names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import yaml

from medcurate.core.context import StageReport
from medcurate.core.spec import CorpusSpec

# The Hub's size_categories buckets: (upper bound, label); the last one is open-ended.
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


def size_category(documents: int) -> str:
    return next((label for bound, label in SIZE_CATEGORIES if documents < bound), "n>1B")


def hub_license(spec: CorpusSpec, hub_licenses: Iterable[str]) -> str | list[str]:
    """The sources' licences as Hub identifiers, or ``other`` when any is not one (the body lists them)."""
    licenses = sorted({source.license.lower() for source in spec.sources})
    if not set(licenses) <= set(hub_licenses):
        return "other"
    return licenses[0] if len(licenses) == 1 else licenses


def card_header(spec: CorpusSpec, manifest: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "license": hub_license(spec, settings["hub_licenses"]),
        "language": settings["language"],
        "task_categories": settings["task_categories"],
        "task_ids": settings["task_ids"],
        "size_categories": [size_category(manifest["totals"]["documents"])],
        "source_datasets": ["original"],
        "pretty_name": spec.name,
        "tags": ["medical", "clinical", "de-identified"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"{split}/data-*.arrow"} for split in manifest["splits"]],
            }
        ],
    }


def _table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def _removals(reports: dict[str, StageReport], stages: list[str]) -> str:
    rows, missing = [], []
    for stage in stages:
        if stage not in reports:
            missing.append(stage)
            continue
        rows += [[stage, reason, count] for reason, count in sorted(reports[stage].removed_by_reason.items())]
    text = _table(["stage", "reason", "documents removed"], rows) if rows else "No stage removed any document."
    if missing:
        text += f"\n\nNo report of stage(s) {', '.join(missing)} in this data root: their removals are not listed."
    return text


def _deidentification(reports: dict[str, StageReport], settings: dict[str, Any]) -> str:
    parts = [settings["deid_method"]]
    deid = reports.get("deid")
    if deid is None:
        parts.append("No de-identification report in this data root: the replaced spans are not counted here.")
    else:
        operators = deid.details.get("operators", {})
        if operators:
            table = _table(["PHI type", "replaced by"], sorted(operators.items()))
            parts.append("Replacement per PHI type:\n\n" + table)
        phi = deid.details.get("phi_by_type", {})
        if phi:
            table = _table(["PHI type", "count"], sorted(phi.items()))
            parts.append("PHI found and replaced in this build:\n\n" + table)
    parts.append(
        f"Measured recall and precision, and the data they were measured on: see `{settings['deid_figures_doc']}` "
        "in the medcurate repository."
    )
    return "\n\n".join(parts)


def _sources(spec: CorpusSpec, manifest: dict[str, Any]) -> str:
    by_source = manifest["totals"]["by_source"]
    rows = [
        [
            s.name,
            s.kind,
            s.license,
            s.legal_basis,
            s.owner,
            by_source.get(s.name, {}).get("documents", 0),
            by_source.get(s.name, {}).get("tokens", 0),
        ]
        for s in sorted(spec.sources, key=lambda s: s.name)
    ]
    return _table(["source", "kind", "licence", "legal basis", "owner", "documents", "tokens"], rows)


def _splits(manifest: dict[str, Any], clinical_documents: dict[str, int]) -> str:
    by_split = manifest["totals"]["by_split"]
    rows = [
        [
            split,
            by_split.get(split, {}).get("rows", 0),
            by_split.get(split, {}).get("documents", 0),
            clinical_documents[split],
            by_split.get(split, {}).get("tokens", 0),
        ]
        for split in manifest["splits"]
    ]
    return _table(["split", "rows", "documents", "clinical documents", "tokens"], rows)


def render_card(
    spec: CorpusSpec,
    manifest: dict[str, Any],
    reports: dict[str, StageReport],
    settings: dict[str, Any],
    warnings: list[str],
    citation: str,
) -> str:
    clinical = {s.name for s in spec.sources if s.kind in settings["clinical_kinds"]}
    clinical_documents: Counter[str] = Counter({split: 0 for split in manifest["splits"]})
    for shard in manifest["shards"]:
        clinical_documents[shard["split"]] += sum(n for s, n in shard["documents_by_source"].items() if s in clinical)
    header = yaml.safe_dump(card_header(spec, manifest, settings), sort_keys=False, allow_unicode=True)
    erasures = manifest.get("erasures", [])
    sections = [
        f"# {spec.name}",
        settings["summary"],
        "## Loading\n\n```python\nimport datasets, transformers\n\n"
        'splits = datasets.load_from_disk("shards")  # DatasetDict: ' + ", ".join(manifest["splits"]) + "\n"
        'tokenizer = transformers.AutoTokenizer.from_pretrained("shards/tokenizer")\n```\n\n'
        "Rows are token ids (`input_ids`); decode with the tokenizer. "
        f"Mode `{manifest['mode']}`, token dtype `{manifest['token_dtype']}`. Each document's ids are "
        "`[bos] + tokenizer(text, add_special_tokens=False).input_ids + [eos]` (per the spec's BOS/EOS choice; "
        "the ids are in `manifest.json`).",
        "## Splits\n\n" + _splits(manifest, clinical_documents) + ("\n\n" + _bullets(warnings) if warnings else ""),
        "## Sources\n\nEvery document keeps the licence and legal basis of its source: the corpus may be used only "
        "as all of them allow.\n\n" + _sources(spec, manifest),
        "## Data collection\n\n" + settings["data_collection"],
        "## Preprocessing\n\n" + settings["preprocessing"],
        "## What was removed and why\n\n" + _removals(reports, settings["removal_stages"]),
        "## De-identification\n\n" + _deidentification(reports, settings),
        "## Intended uses\n\n" + _bullets(settings["intended_uses"]),
        "## Out-of-scope uses\n\n" + _bullets(settings["out_of_scope_uses"]),
        "## PHI policy\n\n" + settings["phi_policy"],
        "## Limitations\n\n" + settings["limitations"],
        "## Citation\n\n```bibtex\n" + citation + "\n```",
        "## Provenance\n\n"
        + _bullets(
            [
                f"run `{manifest['run_id']}`, medcurate {manifest['code_version']}, "
                f"spec config hash `{manifest['spec_config_hash']}`",
                f"Merkle root of the shards `{manifest['merkle']['root']}` (every shard's sha256 is in "
                "`manifest.json`)",
                f"erasures applied since the build: {len(erasures)}"
                + (f" ({', '.join(e['erasure_id'] for e in erasures)})" if erasures else ""),
            ]
        ),
    ]
    return f"---\n{header}---\n\n" + "\n\n".join(sections) + "\n"

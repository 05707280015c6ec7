"""The shard stage: curated documents -> tokenized, split, size-bounded HF shards plus a sealed manifest.

Output under ``shards/`` (load a split with ``datasets.load_from_disk(shards/<split>)``):

* ``tokenizer/tokenizer.json``: the tokenizer the ids were made with (given in the spec, or trained on the curated
  training split);
* ``<split>/``: one directory per spec split in HF ``save_to_disk`` layout: one row per document (mode
  ``documents``) or per ``seq_len`` sequence with its document boundaries (mode ``packed``, ``packing.py``);
* ``manifest.json``: every shard's sha256 and counts, totals, inputs, tokenizer digest, spec hash, Merkle root;
* the trainer's files (``trainer_files.py``): ``dataset_dict.json``, the tokenizer's transformers config, the
  dataset card ``README.md`` and ``croissant.json``.

The build happens in a staging directory next to ``shards/`` and replaces it only when complete, so a
failed run never leaves a half-written shard set where a trainer would pick it up.  The staging directory
outlives a killed build: the next attempt with the same inputs keeps the shards the last one completed
(``progress.py``) and writes only the rest.  The same curated data, spec and run id give byte-identical
output: rows keep the curated input order (files sorted by path), whatever order Ray's workers finish in.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from medcurate.core.actor_pool import actor_count
from medcurate.core.context import RunContext, StageFailed, StageReport
from medcurate.core.hashing import sha256_file
from medcurate.core.ray_runtime import ray_session
from medcurate.core.zones import publish_dir, zone_parts
from pipelines.shard.hf_layout import SplitWriter, Tally
from pipelines.shard.manifest import build_manifest, code_version, write_manifest
from pipelines.shard.packing import Packer, packed_schema, packed_tally
from pipelines.shard.progress import BuildProgress, ShardFile, build_key
from pipelines.shard.ray_tokenize import (
    curated_batches,
    document_schema,
    token_id_type,
    tokenized_batches,
)
from pipelines.shard.tokenizer import TokenizerInfo, describe_tokenizer, prepare_tokenizer
from pipelines.shard.trainer_files import dataset_citation, dataset_license, split_warnings, write_trainer_files

log = logging.getLogger(__name__)

STAGE = "shard"
TOKENIZER_STEP = "tokenizer"


def documents_tally(rows: pa.Table) -> tuple[Counter[str], Counter[str]]:
    documents: Counter[str] = Counter(rows.column("source").to_pylist())
    tokens: Counter[str] = Counter()
    for source, n in zip(rows.column("source").to_pylist(), rows.column("n_tokens").to_pylist(), strict=True):
        tokens[source] += n
    return documents, tokens


@dataclass(frozen=True)
class ShardMode:
    schema: Callable[[pa.DataType], pa.Schema]
    tally: Tally
    row_description: str


MODES = {
    "documents": ShardMode(document_schema, documents_tally, "one tokenized document per row"),
    "packed": ShardMode(packed_schema, packed_tally, "fixed-length token sequences with document boundaries"),
}


def curated_files(curated: Path) -> list[Path]:
    """The curated Parquet parts, sorted: the order the tokenizer trainer reads them in."""
    return zone_parts(curated)


def input_records(curated: Path, files: list[Path]) -> list[dict[str, Any]]:
    """Each curated file's path (relative to the zone), sha256 and size: in the manifest and the build key."""
    return [
        {"path": f.relative_to(curated).as_posix(), "sha256": sha256_file(f), "bytes": f.stat().st_size} for f in files
    ]


def _count(batch: pa.Table, report: StageReport, extra_copies: Counter[str]) -> pa.Table:
    """Count documents in, out and dropped (by reason) per source; return the rows to write."""
    first_copy = batch.filter(pc.equal(batch.column("repeat"), 0))
    dropped = pc.is_valid(first_copy.column("drop_reason"))
    for source, count in Counter(first_copy.column("source").to_pylist()).items():
        report.counts(source).input += count
    for source, reason in zip(
        first_copy.filter(dropped).column("source").to_pylist(),
        first_copy.filter(dropped).column("drop_reason").to_pylist(),
        strict=True,
    ):
        report.counts(source).remove(reason)
    for source, count in Counter(first_copy.filter(pc.invert(dropped)).column("source").to_pylist()).items():
        report.counts(source).output += count
    kept = batch.filter(pc.is_null(batch.column("drop_reason")))
    extra_copies.update(kept.filter(pc.greater(kept.column("repeat"), 0)).column("source").to_pylist())
    return kept


def write_shards(
    ctx: RunContext,
    files: list[Path],
    tokenizer: TokenizerInfo,
    progress: BuildProgress,
    report: StageReport,
) -> tuple[list[ShardFile], pa.DataType]:
    """Tokenize (in the driver or on Ray actors), then cut each split's ordered rows into shards (skipping those
    already complete)."""
    spec = ctx.spec
    mode = MODES[spec.shard.mode]
    id_type = token_id_type(tokenizer.vocab_size)
    writers = {
        split: SplitWriter(
            progress.staging / split,
            split,
            mode.schema(id_type),
            spec.shard.target_shard_bytes,
            description=f"{spec.name}: {split} split, {mode.row_description} (medcurate shard stage)",
            tally=mode.tally,
            progress=progress,
            license=dataset_license(spec),
            citation=dataset_citation(spec),
        )
        for split in spec.splits
    }
    packed = spec.shard.mode == "packed"
    packers = {split: Packer(split, spec.seq_len, id_type) for split in spec.splits} if packed else {}
    batches = tokenized_batches(
        curated_batches(files, spec.parallel.batch_docs),
        tokenizer.to_json(),
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        vocab_size=tokenizer.vocab_size,
        splits=spec.splits,
        mixing=spec.shard.mixing,
        workers=spec.parallel.workers,
    )
    extra_copies: Counter[str] = Counter()
    for batch in batches:
        kept = _count(batch, report, extra_copies)
        for split, writer in writers.items():
            documents = kept.filter(pc.equal(kept.column("split"), split))
            writer.write(packers[split].add(documents) if packed else documents)
    if packed:
        for split, writer in writers.items():
            writer.write(packers[split].finish())
    shards = [shard for writer in writers.values() for shard in writer.close()]
    report.details["mixing_extra_copies"] = dict(sorted(extra_copies.items()))
    report.details["shards_reused"] = sum(w.reused for w in writers.values())
    report.details["shards_written"] = sum(w.written for w in writers.values())
    return shards, id_type


def _tokenizer(ctx: RunContext, files: list[Path], progress: BuildProgress) -> TokenizerInfo:
    """The build's tokenizer; a resumed build keeps the one its earlier attempt trained or copied."""
    path = progress.staging / "tokenizer" / "tokenizer.json"
    if progress.step_done(TOKENIZER_STEP, path):
        return describe_tokenizer(ctx.spec, path)
    tokenizer = prepare_tokenizer(ctx.spec, files, path)
    progress.mark_step(TOKENIZER_STEP, tokenizer.sha256)
    return tokenizer


def run(ctx: RunContext) -> StageReport:
    report = StageReport(stage=STAGE, run_id=ctx.run_id)
    spec = ctx.spec
    unknown = sorted(set(spec.shard.mixing) - {s.name for s in spec.sources})
    if unknown:
        raise StageFailed(f"shard.mixing names unknown source(s) {unknown}")
    files = curated_files(ctx.zones.curated)
    if not files:
        raise StageFailed(f"no curated Parquet files under {ctx.zones.curated}: run the curate stage first")

    inputs = input_records(ctx.zones.curated, files)
    given = spec.resolve(spec.tokenizer.path) if spec.tokenizer.path else None
    key = build_key(
        {
            "inputs": inputs,
            "spec": spec.config_hash(),
            "code": code_version(),
            "tokenizer": sha256_file(given) if given and given.is_file() else None,
        }
    )
    progress = BuildProgress(ctx.zones.root / f".{ctx.zones.shards.name}-staging", key)
    tokenizer = _tokenizer(ctx, files, progress)
    log.info("shard: tokenizer ready (vocab %d, sha256 %s)", tokenizer.vocab_size, tokenizer.sha256[:12])
    # Ray only for more than one tokenizer: one runs in the driver (``tokenized_batches``).
    with ray_session() if actor_count(spec.parallel.workers) != 1 else nullcontext():
        shards, id_type = write_shards(ctx, files, tokenizer, progress, report)
    progress.finish()
    manifest = build_manifest(
        spec=spec,
        run_id=ctx.run_id,
        root=progress.staging,
        shards=shards,
        tokenizer=tokenizer,
        token_dtype=str(id_type),
        inputs=inputs,
    )
    write_manifest(manifest, progress.staging / "manifest.json")
    report.details["warnings"] = split_warnings(spec, manifest)
    write_trainer_files(ctx, progress.staging, manifest, report)
    publish_dir(progress.staging, ctx.zones.shards)

    totals = manifest["totals"]
    report.details |= {
        "manifest": str(ctx.zones.shards / "manifest.json"),
        "mode": spec.shard.mode,
        "shard_count": len(shards),
        "total_rows": totals["rows"],
        "total_documents": totals["documents"],
        "total_tokens": totals["tokens"],
        "tokens_by_source": {source: t["tokens"] for source, t in totals["by_source"].items()},
        "tokens_by_split": {split: t["tokens"] for split, t in totals["by_split"].items()},
        "documents_by_split": {split: t["documents"] for split, t in totals["by_split"].items()},
        "merkle_root": manifest["merkle"]["root"],
        "tokenizer_sha256": tokenizer.sha256,
        "token_dtype": str(id_type),
    }
    log.info(
        "shard: %d documents, %d tokens in %d shards (%d reused from an interrupted build; removed: %s)",
        totals["documents"],
        totals["tokens"],
        len(shards),
        report.details["shards_reused"],
        dict(report.removed_by_reason),
    )
    return report

"""The shard stage: curated documents -> tokenized, split, size-bounded HF shards plus a sealed manifest.

Output under ``shards/`` (load a split with ``datasets.load_from_disk(shards/<split>)``):

* ``tokenizer.json``: the tokenizer the ids were made with (given in the spec, or trained on the curated
  training split);
* ``<split>/``: one directory per spec split in HF ``save_to_disk`` layout, rows sorted by ``doc_id``;
* ``manifest.json``: every shard's sha256 and counts, totals, tokenizer digest, spec hash, Merkle root.

The build happens in a staging directory next to ``shards/`` and replaces it only when complete, so a
failed run never leaves a half-written shard set where a trainer would pick it up.  The same curated data,
spec and run id give byte-identical output: Ray's scheduling order is removed by sorting on ``doc_id``.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from medcurate.context import RunContext, StageFailed, StageReport
from medcurate.ray_runtime import ray_session
from medcurate.zones import publish_dir
from pipelines.shard.hf_layout import ShardFile, SplitWriter
from pipelines.shard.manifest import build_manifest, write_manifest
from pipelines.shard.ray_tokenize import BATCH_ROWS, document_schema, token_id_type, tokenized_documents
from pipelines.shard.tokenizer import TokenizerInfo, prepare_tokenizer

log = logging.getLogger(__name__)

STAGE = "shard"
EMPTY_AFTER_TOKENIZATION = "empty_after_tokenization"


def curated_files(curated: Path) -> list[Path]:
    """The curated Parquet parts, sorted: the order the tokenizer trainer reads them in."""
    return sorted(p for p in curated.rglob("*.parquet") if not p.name.startswith("."))


def _check_sorted_unique(doc_ids: pa.ChunkedArray, previous: str | None) -> str | None:
    """Fail on a duplicate doc_id: rows with equal sort keys would land in an order Ray chose."""
    ids = (
        doc_ids if previous is None else pa.concat_arrays([pa.array([previous], pa.string()), doc_ids.combine_chunks()])
    )
    if len(ids) > 1 and not pc.all(pc.less(ids[:-1], ids[1:])).as_py():
        raise StageFailed("duplicate doc_id in the curated zone: deduplicate before sharding")
    return doc_ids[-1].as_py() if len(doc_ids) else previous


def write_documents(
    ctx: RunContext, files: list[Path], tokenizer: TokenizerInfo, out_dir: Path, report: StageReport
) -> tuple[list[ShardFile], pa.DataType]:
    """Mode ``documents``: one row per document, ``<|bos|> text <|eos|>`` ids, no packing or truncation."""
    id_type = token_id_type(tokenizer.vocab_size)
    schema = document_schema(id_type)
    writers = {
        split: SplitWriter(
            out_dir / split,
            split,
            schema,
            ctx.spec.shard.target_shard_bytes,
            description=f"{ctx.spec.name}: {split} split, one tokenized document per row (medcurate shard stage)",
        )
        for split in ctx.spec.splits
    }
    rows = tokenized_documents(
        files,
        tokenizer.to_json(),
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        vocab_size=tokenizer.vocab_size,
        splits=ctx.spec.splits,
    )
    previous: str | None = None
    for batch in rows.iter_batches(batch_format="pyarrow", batch_size=BATCH_ROWS):
        previous = _check_sorted_unique(batch.column("doc_id"), previous)
        nonempty = pc.greater(batch.column("n_tokens"), 0)
        for source, count in Counter(batch.column("source").to_pylist()).items():
            report.counts(source).input += count
        for source, count in Counter(batch.filter(pc.invert(nonempty)).column("source").to_pylist()).items():
            report.counts(source).remove(EMPTY_AFTER_TOKENIZATION, count)
        kept = batch.filter(nonempty)
        for source, count in Counter(kept.column("source").to_pylist()).items():
            report.counts(source).output += count
        for split, writer in writers.items():
            writer.write(kept.filter(pc.equal(kept.column("split"), split)))
    return [shard for writer in writers.values() for shard in writer.close()], id_type


# One writer per shard mode; "packed" (fixed seq_len windows across documents) is not built yet.
MODES: dict[str, Callable[..., tuple[list[ShardFile], pa.DataType]]] = {"documents": write_documents}


def run(ctx: RunContext) -> StageReport:
    report = StageReport(stage=STAGE, run_id=ctx.run_id)
    write_mode = MODES.get(ctx.spec.shard.mode)
    if write_mode is None:
        raise StageFailed(f"shard mode '{ctx.spec.shard.mode}' is not implemented; available: {sorted(MODES)}")
    files = curated_files(ctx.zones.curated)
    if not files:
        raise StageFailed(f"no curated Parquet files under {ctx.zones.curated}: run the curate stage first")

    staging = ctx.zones.root / f".{ctx.zones.shards.name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    tokenizer = prepare_tokenizer(ctx.spec, files, staging / "tokenizer.json")
    log.info("shard: tokenizer ready (vocab %d, sha256 %s)", tokenizer.vocab_size, tokenizer.sha256[:12])
    with ray_session():
        shards, id_type = write_mode(ctx, files, tokenizer, staging, report)
    manifest = build_manifest(
        spec=ctx.spec, run_id=ctx.run_id, root=staging, shards=shards, tokenizer=tokenizer, token_dtype=str(id_type)
    )
    write_manifest(manifest, staging / "manifest.json")
    publish_dir(staging, ctx.zones.shards)

    totals = manifest["totals"]
    report.details = {
        "manifest": str(ctx.zones.shards / "manifest.json"),
        "shard_count": len(shards),
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
        "shard: %d documents, %d tokens in %d shards (removed: %s)",
        totals["documents"],
        totals["tokens"],
        len(shards),
        dict(report.removed_by_reason),
    )
    return report

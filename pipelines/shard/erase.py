"""The shard stage's erase hook: rewrite the published shards without some documents.

Erasure (``medcurate/erasure.py``) calls ``rewrite_without`` once it removed the documents from every other zone.
Only the shard files that hold them are rewritten, with the shard writer, from their remaining rows; every other
shard stays byte-identical.  Then each touched split's ``dataset_info.json`` / ``state.json``, the manifest and
its Merkle root follow, the manifest lists the erasure, and the trainer's files (dataset card, Croissant,
``trainer_files.py``) are written again from the new manifest.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from governance.catalog import row_doc_ids, shard_rows
from medcurate.core.context import RunContext, load_stage_reports
from medcurate.core.sealing import seal, unseal
from pipelines.shard.hf_layout import ShardFile, SplitWriter
from pipelines.shard.manifest import build_manifest, write_manifest
from pipelines.shard.stage import MODES, curated_files, input_records
from pipelines.shard.tokenizer import TokenizerInfo
from pipelines.shard.trainer_files import write_trainer_files


def rewrite_without(ctx: RunContext, doc_ids: set[str], erasure_id: str) -> tuple[list[str], str | None, str | None]:
    """Rewrite the shards holding ``doc_ids`` without them, then the split metadata and the manifest.

    Returns (shards rewritten, Merkle root before, after); the roots are None when nothing was published.
    """
    shards = ctx.zones.shards
    manifest_path = shards / "manifest.json"
    if not manifest_path.exists():
        return [], None, None
    manifest = json.loads(manifest_path.read_text())
    before = manifest["merkle"]["root"]
    ids = pa.array(sorted(doc_ids), pa.string())
    occurrences = shard_rows(shards, manifest)
    affected = sorted(set(occurrences.filter(pc.is_in(occurrences["doc_id"], ids))["shard_path"].to_pylist()))
    if not affected:
        return [], before, before
    files = _manifest_shards(shards, manifest)
    tally = MODES[manifest["mode"]].tally
    scratch = shards / f".erasure-{erasure_id}"
    for relative in affected:
        path = shards / relative
        with pa.ipc.open_stream(path) as reader:
            table = reader.read_all()
        description, terms = _split_info(path.parent)
        # One shard in, one shard out: a target size no row set can reach keeps the writer from cutting it.
        writer = SplitWriter(
            scratch / relative,
            files[relative].split,
            table.schema.remove_metadata(),
            1 << 62,
            description,
            tally,
            **terms,
        )
        writer.write(table.filter(pc.invert(_erased_rows(table, ids))))
        (written,) = writer.close()
        unseal(path)
        written.path.replace(path)
        old = files[relative]
        files[relative] = replace(written, path=path, index=old.index, rows_start=old.rows_start)
    for split_dir in sorted({(shards / r).parent for r in affected}):
        split_files = sorted((f for f in files.values() if f.path.parent == split_dir), key=lambda f: f.index)
        description, terms = _split_info(split_dir)
        with pa.ipc.open_stream(split_files[0].path) as reader:
            schema = reader.schema.remove_metadata()
        # The shard writer's own metadata step (in scratch: a writer clears its directory), so state.json's
        # fingerprint follows the new shard digests; then the two files replace the split's.
        meta = scratch / "metadata" / split_dir.name
        SplitWriter(meta, split_files[0].split, schema, 1, description, tally, **terms).write_metadata(split_files)
        for name in ("dataset_info.json", "state.json"):
            unseal(split_dir / name)
            (meta / name).replace(split_dir / name)
    shutil.rmtree(scratch, ignore_errors=True)
    tok = manifest["tokenizer"]
    tokenizer = TokenizerInfo(
        shards / tok["path"], tok["sha256"], tok["vocab_size"], tok["bos_id"], tok["eos_id"], tok.get("pad_id")
    )
    rebuilt = build_manifest(
        spec=ctx.spec,
        run_id=manifest["run_id"],
        root=shards,
        shards=list(files.values()),
        tokenizer=tokenizer,
        token_dtype=manifest["token_dtype"],
        inputs=input_records(ctx.zones.curated, curated_files(ctx.zones.curated)),
    )
    after = rebuilt["merkle"]["root"]
    erasures = manifest.get("erasures", []) + [
        {"erasure_id": erasure_id, "shards_rewritten": affected, "merkle_root_before": before}
    ]
    # Only what the erasure changed is replaced; the spec hash and run id still name the build.
    manifest.update({k: rebuilt[k] for k in ("shards", "totals", "merkle", "inputs")}, erasures=erasures)
    unseal(manifest_path)
    write_manifest(manifest, manifest_path)
    # The card and Croissant state counts and erasures: rewritten from the new manifest (by rename).
    write_trainer_files(ctx, shards, manifest, load_stage_reports(ctx.zones)["shard"])
    seal(shards)
    return affected, before, after


def _split_info(split_dir: Path) -> tuple[str, dict[str, str]]:
    """A split's description, licence and citation from its ``dataset_info.json``, for the shard writer."""
    info = json.loads((split_dir / "dataset_info.json").read_text())
    return info.get("description", ""), {"license": info.get("license", ""), "citation": info.get("citation", "")}


def _erased_rows(table: pa.Table, doc_ids: pa.Array) -> pa.Array:
    """Per shard row: whether it holds an erased document (a packed row goes whole: its neighbours' fragments
    in that row go with it, which the catalog then shows as fewer occurrences)."""
    rows, ids = row_doc_ids(table)
    hit = pc.filter(rows, pc.fill_null(pc.is_in(ids, doc_ids), False))
    return pc.is_in(pa.array(range(table.num_rows), pa.int64()), hit)


def _manifest_shards(shards: Path, manifest: dict[str, Any]) -> dict[str, ShardFile]:
    """The manifest's shard entries as the shard writer's records (row ranges recomputed per split)."""
    files: dict[str, ShardFile] = {}
    next_row: dict[str, int] = {}
    for e in sorted(manifest["shards"], key=lambda e: e["path"]):
        start = next_row.get(e["split"], 0)
        index = int(re.search(r"data-(\d+)-of-", e["path"]).group(1))
        files[e["path"]] = ShardFile(
            shards / e["path"],
            e["split"],
            index,
            e["sha256"],
            start,
            e["rows"],
            e["documents"],
            e["tokens"],
            e["documents_by_source"],
            e["tokens_by_source"],
        )
        next_row[e["split"]] = start + e["rows"]
    return files

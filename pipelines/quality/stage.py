"""The validation stages: ``validate_raw`` (raw zone), ``curate`` (de-identified zone -> curated zone) and
``validate_shards`` (the tokenized shards), each a Great Expectations checkpoint per source.

Two kinds of failure, handled differently:

* record-level: a row fails a column-value expectation (empty text, duplicate doc_id, unknown enum).  The
  row is quarantined with the expectation type as reason and the rest of the batch goes on.
* batch-level: the table is empty, its schema is wrong, or too many of a source's rows fail (a source whose
  text column is entirely empty is broken, not noisy).  The stage raises ``StageFailed`` after validating
  every source, so the Data Docs show all problems at once, and nothing is published.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.data_context import FileDataContext

from medcurate.core.actor_pool import actor_count
from medcurate.core.context import RunContext, StageFailed, StageReport
from medcurate.core.listing import list_inputs
from medcurate.core.names import SOURCE_KINDS
from medcurate.core.quarantine import QuarantineWriter, quarantined_upstream
from medcurate.core.ray_runtime import ray_session
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, LEGAL_BASES, RAW_DOCUMENT_SCHEMA
from medcurate.core.zones import publish_dir, write_parquet_groups
from pipelines.quality.curate_pipeline import build_pipeline, minimum_rows, previous_counts, save_counts
from pipelines.quality.curation_config import curation_config
from pipelines.quality.dedup import published_entries
from pipelines.quality.dedup_index import PublishedIndex, index_path, save_index
from pipelines.quality.frame_partitions import FramePartitions
from pipelines.quality.frames import curated_frame, document_frame, shard_document_facts, shard_segments
from pipelines.quality.gx_context import ValidationOutcome, open_context, publish_data_docs, validate_partitions
from pipelines.quality.spill import Spill
from pipelines.quality.steps import Doc, Ledger
from pipelines.quality.suites import SuiteConfig, load_suites
from pipelines.quality.zone_io import (
    SHARD_ROWS,
    deid_table,
    part_batches,
    relaxed,
    shard_row_batches,
    zone_doc_ids,
    zone_id_lookup,
    zone_rows,
)

log = logging.getLogger(__name__)

QUARANTINED_EARLIER = "quarantined_earlier"
# Documents per validate_raw / curate batch when the spec's ``parallel.batch_docs`` is null: what the driver
# holds at once (as dicts in curate).
BATCH_DOCS = 2048
# What curate's second pass reads: a quarantine record's fields and the gate's event times, no text.
OBSERVED_COLUMNS = ["doc_id", "source", "source_file", "source_sha256", "position", "metadata"]
# What a quarantine record of a raw row needs: no text.
QUARANTINE_COLUMNS = ["doc_id", "source_file", "source_sha256", "position"]
# Rows per row group of a curated part: a fixed number (whatever the batch size), so the bytes do not depend on
# how curate batched, and small enough that writing a part, or reading a row group of it, holds a few MB.
CURATED_ROW_GROUP_ROWS = 65_536


class _PassLog:
    """Logs the time each of curate's passes took and the driver's peak memory so far: at scale, the first
    place to look for the pass that grows (docs/operations.md, "Scale")."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.last = time.perf_counter()

    def __call__(self, what: str) -> None:
        now = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        log.info("%s: %s done in %.1f s (peak resident memory so far %d MiB)", self.stage, what, now - self.last, peak)
        self.last = now


def _document_parameters(ctx: RunContext) -> dict[str, Any]:
    return {
        "min_chars": ctx.spec.quality.min_chars,
        "max_chars": ctx.spec.quality.max_chars,
        "source_kinds": list(SOURCE_KINDS),
        "legal_bases": list(LEGAL_BASES),
    }


def _triage(outcome: ValidationOutcome, suite: SuiteConfig) -> tuple[dict[int, tuple[str, str]], list[str]]:
    """Split an outcome into quarantinable rows (row -> reason, detail) and batch-level problems.

    A row failing several expectations is quarantined once, under the first in suite order; the detail
    lists all of them by type and column (never a value).
    """
    problems = [f"{etype}({column})" if column else etype for etype, column in outcome.batch_failures]
    rows: dict[int, tuple[str, str]] = {}
    for row, failures in outcome.row_failures.items():
        ordered = sorted(set(failures), key=lambda f: suite.priority(*f))
        detail = "failed " + ", ".join(f"{etype}({column})" for etype, column in ordered)
        rows[row] = (ordered[0][0], detail)
    if outcome.evaluated and len(rows) / outcome.evaluated > suite.max_failed_fraction:
        failed = sorted({f"{etype}({column})" for fs in outcome.row_failures.values() for etype, column in fs})
        problems.append(
            f"{len(rows)} of {outcome.evaluated} rows failed (more than {suite.max_failed_fraction:.0%}): "
            + ", ".join(failed)
        )
    return rows, problems


def _fail_if(stage: str, problems: dict[str, list[str]]) -> None:
    if problems:
        listed = "; ".join(f"source '{source}': {', '.join(items)}" for source, items in sorted(problems.items()))
        raise StageFailed(f"{stage}: batch-level validation failed, nothing published: {listed}")


def _quarantine_rows(writer: QuarantineWriter, source: str, table: pa.Table, rows: dict[int, tuple[str, str]]) -> None:
    for row, (reason, detail) in sorted(rows.items()):
        writer.add(
            source=source,
            source_file=table["source_file"][row].as_py(),
            source_sha256=table["source_sha256"][row].as_py(),
            position=table["position"][row].as_py(),
            doc_id=table["doc_id"][row].as_py(),
            reason=reason,
            detail=detail,
        )


def _finish(report: StageReport, context: FileDataContext, outcomes: Iterable[ValidationOutcome]) -> None:
    report.details["validations"] = [o.summary() for o in outcomes]
    report.details["data_docs"] = publish_data_docs(context)


def validate_raw(ctx: RunContext) -> StageReport:
    """Validate each source's raw parts with the "raw" suite; quarantine failing rows, fail broken batches.

    The documents stream: each source's frame of ids and text facts is built ``parallel.batch_docs`` documents
    at a time and validated a partition at a time (frame_partitions.py), and the rows the suite fails are
    quarantined in a second pass that reads no text."""
    stage = "validate_raw"
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suite = load_suites()["raw"]
    context = open_context(ctx.zones.governance)
    writer = QuarantineWriter(ctx.zones, stage, ctx.run_id)
    batch_docs = ctx.spec.parallel.batch_docs or BATCH_DOCS
    outcomes, problems = [], {}
    with _scratch(ctx, f"{stage}-frames") as scratch:
        for source in ctx.spec.sources:
            directory = ctx.zones.raw / source.name
            frame = FramePartitions(scratch / source.name, zone_rows(directory), _empty_frame(RAW_DOCUMENT_SCHEMA))
            for table in part_batches(directory, RAW_DOCUMENT_SCHEMA, stage, batch_docs):
                frame.add(document_frame(table))
            # An empty source is fine only when it has no input; otherwise the suite's row count check fails it.
            if not frame.rows and not list_inputs(source, ctx.spec.base_dir).files:
                continue
            outcome = validate_partitions(context, suite, source.name, frame, _document_parameters(ctx), ctx.run_id)
            outcomes.append(outcome)
            rows, source_problems = _triage(outcome, suite)
            if source_problems:
                problems[source.name] = source_problems
            if rows:
                first = 0
                for table in part_batches(directory, RAW_DOCUMENT_SCHEMA, stage, batch_docs, QUARANTINE_COLUMNS):
                    batch = {r - first: v for r, v in rows.items() if first <= r < first + table.num_rows}
                    _quarantine_rows(writer, source.name, table, batch)
                    first += table.num_rows
            counts = report.counts(source.name)
            counts.input = frame.rows
            counts.output = frame.rows - len(rows)
            for reason, _ in rows.values():
                counts.remove(reason)
    writer.flush()
    _finish(report, context, outcomes)
    log.info("%s: %d documents validated, %d quarantined", stage, report.total_input, writer.count())
    _fail_if(stage, problems)
    return report


def _live_batches(
    ctx: RunContext, source: str, skip: pa.Array, batch_docs: int, columns: list[str] | None = None
) -> Iterator[tuple[int, pa.Table]]:
    """A source's de-identified documents, a batch at a time: (rows read, rows an earlier stage did not
    quarantine).  Every pass reads the same rows in the same order, so a row's number in the source is stable."""
    for table in part_batches(ctx.zones.deid / source, DEID_DOCUMENT_SCHEMA, "curate", batch_docs, columns):
        live = table.filter(pc.invert(pc.fill_null(pc.is_in(table["doc_id"], skip), False)))
        yield table.num_rows, live


def _passing_batches(ctx: RunContext, source: _Source, skip: pa.Array, batch_docs: int) -> Iterator[pa.Table]:
    """A source's live documents without the rows its "deid" suite failed, a batch at a time."""
    row = 0
    for _, live in _live_batches(ctx, source.name, skip, batch_docs):
        keep = [row + i not in source.deid_failed for i in range(live.num_rows)]
        row += live.num_rows
        yield live if all(keep) else live.filter(pa.array(keep))


@contextmanager
def _scratch(ctx: RunContext, name: str) -> Iterator[Path]:
    """A stage's working folder beside the zones (spills, validation frames' partitions): emptied first, in case
    a killed attempt left it, and removed however the stage ends."""
    scratch = ctx.zones.root / f".{name}.{ctx.run_id}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _empty_frame(schema: pa.Schema) -> pd.DataFrame:
    """The document frame of no rows: the columns and types every batch's frame has."""
    return document_frame(relaxed(schema).empty_table())


def _drop_failed(
    ledger: Ledger, step: str, docs: list[Doc], first_row: int, failed: dict[int, tuple[str, str]]
) -> list[Doc]:
    """Quarantine the rows of a batch (numbered from ``first_row``) that a suite failed; return the others."""
    passing = []
    for index, doc in enumerate(docs):
        verdict = failed.get(first_row + index)
        if verdict is None:
            passing.append(doc)
        else:
            ledger.drop(doc, step, *verdict)
    ledger.count(step, docs, passing)
    return passing


@dataclass
class _Source:
    """What curate keeps of a source between passes: its suite verdicts by row, never its documents."""

    name: str
    deid_failed: dict[int, tuple[str, str]]
    passing_ids: pa.ChunkedArray  # Arrow, not a set of str: at a million documents the set was ~100 MB
    cleaned: Spill | None = None
    curated: Spill | None = None
    curated_failed: dict[int, tuple[str, str]] = field(default_factory=dict)


def curate(ctx: RunContext) -> StageReport:
    """De-identified zone -> curated zone, through the curate steps, each accounting for what it drops.

    1. GX "deid" suite per source (record failures quarantined, broken batches fail the stage);
    2. residual-PHI gate, 3. filters, 4. exact / near / copy-forward dedup, 5. benchmark decontamination
       (curate_pipeline.py), every drop quarantined with its step and reason;
    6. GX "curated" suite on what would be published: schema facts, bounds, value sets, a raw parent for
       every document, and no source falling by more than ``quality.max_source_drop`` from the last run.

    The documents stream: each pass reads ``parallel.batch_docs`` of them at a time (default
    ``BATCH_DOCS``) and the passes hand documents to each other through spills on disk (spill.py).
    The suites see frames of ids and text facts, a partition at a time; dedup keeps hashes and signatures only,
    decides once over the whole run in dedup order, and applies its decisions in a second pass, so no
    decision depends on how the documents were batched.

    Output is written to a staging directory and swapped in only when every source passed, so a failed
    batch publishes nothing and a crash never leaves a half-written curated zone.  The dedup index and the
    per-source counts under ``governance/`` are updated only after publishing.
    """
    stage = "curate"
    with _scratch(ctx, "curate-spill") as scratch:
        return _curate(ctx, stage, scratch)


def _curate(ctx: RunContext, stage: str, scratch: Path) -> StageReport:
    config = curation_config(ctx.spec)
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suites = load_suites()
    context = open_context(ctx.zones.governance)
    skipped = quarantined_upstream(ctx.zones, stage)
    skip = pa.array(sorted(skipped), pa.string())
    writer = QuarantineWriter(ctx.zones, stage, ctx.run_id)
    ledger = Ledger(writer, report)
    batch_docs = ctx.spec.parallel.batch_docs or BATCH_DOCS
    staging = ctx.zones.root / f".curated.{ctx.run_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    parameters = _document_parameters(ctx)
    outcomes, problems, sources = [], {}, []
    done = _PassLog(stage)

    # Pass 1: the "deid" suite on each source's frame of ids and text facts.
    for source in ctx.spec.sources:
        counts = report.counts(source.name)
        directory = ctx.zones.deid / source.name
        empty = _empty_frame(DEID_DOCUMENT_SCHEMA)
        frame = FramePartitions(scratch / "frames-deid" / source.name, zone_rows(directory), empty)
        live_ids: list[pa.Array] = []
        for read, live in _live_batches(ctx, source.name, skip, batch_docs):
            counts.input += read
            if live.num_rows < read:
                counts.remove(QUARANTINED_EARLIER, read - live.num_rows)
            frame.add(document_frame(live))
            live_ids.extend(live.column("doc_id").chunks)
        # Nothing to curate is fine when every raw document of the source is accounted for in quarantine;
        # an empty table while raw documents are still live means they were lost: the suite fails it.
        if not frame.rows and not zone_doc_ids(ctx.zones.raw / source.name) - skipped:
            continue
        outcome = validate_partitions(context, suites["deid"], source.name, frame, parameters, ctx.run_id)
        outcomes.append(outcome)
        failed, source_problems = _triage(outcome, suites["deid"])
        if source_problems:
            problems[source.name] = source_problems
        sources.append(_Source(source.name, failed, _passing_ids(pa.chunked_array(live_ids, pa.string()), failed)))

    done("pass 1 (deid suite)")
    pipeline, previous = None, PublishedIndex()
    if not problems:
        curated_ids = pa.chunked_array([c for s in sources for c in s.passing_ids.chunks], pa.string()).combine_chunks()
        previous = PublishedIndex.load(ctx.zones.governance, config.dedup, curated_ids)
        pipeline = build_pipeline(ctx, config, previous, scratch / "dedup")
    # Pass 2 (no text read): quarantine what the suite failed; the gate observes each patient's date shift.
    for source in sources:
        row = 0
        for _, live in _live_batches(ctx, source.name, skip, batch_docs, OBSERVED_COLUMNS):
            docs = live.to_pylist()
            passing = _drop_failed(ledger, "gx_deid", docs, row, source.deid_failed)
            row += len(docs)
            if pipeline is not None:
                pipeline.gate.observe(passing)

    published: list[_Source] = []
    if pipeline is not None:
        pipeline.gate.decide()
        done("pass 2 (gate observes)")
        # Pass 3: gate and filters (on Ray); dedup records the cleaned documents' fingerprints; they are spilled.
        workers = ctx.spec.parallel.workers
        with ray_session() if actor_count(workers) != 1 else nullcontext():
            for source in sources:
                source.cleaned = Spill(scratch / "cleaned" / f"{source.name}.arrow", relaxed(DEID_DOCUMENT_SCHEMA))
                passing = _passing_batches(ctx, source, skip, batch_docs)
                for table in pipeline.clean(passing, ledger, workers):
                    source.cleaned.write(table)
        done("pass 3 (gate, filters, dedup fingerprints)")
        pipeline.decide()
        done("dedup decisions")
        # Pass 4: dedup's decisions and decontamination; the "curated" suite on each source's frame.
        earlier = previous_counts(ctx.zones.governance)
        licenses = sorted({s.license for s in ctx.spec.sources})
        for source in sources:
            source.curated = Spill(scratch / "curated" / f"{source.name}.arrow", relaxed(DEID_DOCUMENT_SCHEMA))
            raw_ids = zone_id_lookup(ctx.zones.raw / source.name)
            empty = curated_frame(relaxed(DEID_DOCUMENT_SCHEMA).empty_table(), raw_ids)
            frame = FramePartitions(scratch / "frames-curated" / source.name, source.cleaned.rows, empty)
            for batch in source.cleaned.batches():
                table = deid_table(pipeline.finish(batch.to_pylist(), ledger))
                source.curated.write(table)
                frame.add(curated_frame(table, raw_ids))
            bound = {
                **parameters,
                "licenses": licenses,
                "min_rows": minimum_rows(earlier.get(source.name), config.max_source_drop),
            }
            outcome = validate_partitions(context, suites["curated"], source.name, frame, bound, ctx.run_id)
            outcomes.append(outcome)
            source.curated_failed, source_problems = _triage(outcome, suites["curated"])
            if source_problems:
                problems[source.name] = source_problems
            published.append(source)
        done("pass 4 (dedup applied, curated suite)")
    # Pass 5: quarantine what the "curated" suite failed; the rest is what would be published.
    finals: dict[str, Spill] = {}
    for source in published:
        finals[source.name] = final = Spill(scratch / "published" / f"{source.name}.arrow", DEID_DOCUMENT_SCHEMA)
        row = 0
        for batch in source.curated.batches():
            docs = batch.to_pylist()
            final.write(deid_table(_drop_failed(ledger, "gx_curated", docs, row, source.curated_failed)))
            row += len(docs)
    writer.flush()
    _finish(report, context, outcomes)
    report.details["curation_steps"] = ledger.steps_summary()
    if pipeline is not None:
        report.details.update(pipeline.details())
    if problems:
        log.info("%s: batch failed for %d source(s), nothing published", stage, len(problems))
        _fail_if(stage, problems)
    for name, final in finals.items():
        report.counts(name).output = final.rows
        write_parquet_groups(
            final.groups(CURATED_ROW_GROUP_ROWS), DEID_DOCUMENT_SCHEMA, staging / name / "part-00000.parquet"
        )
    publish_dir(staging, ctx.zones.curated)
    done("pass 5 and publish")
    entries = (
        entry
        for name, final in finals.items()
        for batch in final.batches()
        for entry in published_entries(
            [{"doc_id": doc_id, "source": name} for doc_id in batch.column("doc_id").to_pylist()],
            pipeline.exact,
            pipeline.near,
            ctx.run_id,
        )
    )
    report.details["dedup_index"] = {
        "path": str(index_path(ctx.zones.governance)),
        "entries": save_index(ctx.zones.governance, config.dedup, previous, entries),
    }
    done("dedup index")
    save_counts(ctx.zones.governance, ctx.run_id, {name: final.rows for name, final in finals.items()})
    report.details["curated"] = str(ctx.zones.curated)
    log.info("%s: %d documents in, %d curated", stage, report.total_input, report.total_output)
    return report


def _manifest_documents(ctx: RunContext) -> int:
    """Documents the shard manifest lists: how many segments validate_shards expects, to size its partitions
    (only their size depends on it, never a verdict)."""
    path = ctx.zones.shards / "manifest.json"
    shards = json.loads(path.read_text()).get("shards", []) if path.is_file() else []
    return sum(int(s.get("documents") or 0) for s in shards)


def _passing_ids(doc_ids: pa.ChunkedArray, failed: dict[int, tuple[str, str]]) -> pa.ChunkedArray:
    """The doc_ids of a source's rows (in row order) that the suite did not fail, nulls left out."""
    keep = np.ones(len(doc_ids), dtype=bool)
    keep[list(failed)] = False
    passing = doc_ids.filter(pa.array(keep))
    return passing.filter(pc.is_valid(passing))


def validate_shards(ctx: RunContext) -> StageReport:
    """Validate every document segment of all shard rows with the "shards" suite; any failure is fatal.

    Both shard modes are read as segments, a shard file at a time (``zone_io.shard_row_batches``), so one
    suite covers them: a documents-mode row is one segment, a packed row one per document piece.  The report
    counts document copies by source (a packed continuation is not counted again) and shard rows by split.
    """
    stage = "validate_shards"
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suite = load_suites()["shards"]
    context = open_context(ctx.zones.governance)
    mode = ctx.spec.shard.mode
    curated = zone_id_lookup(ctx.zones.curated)
    parameters = {"splits": list(ctx.spec.splits), "max_row_tokens": ctx.spec.seq_len if mode == "packed" else None}
    copies: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    shard_rows = 0
    with _scratch(ctx, f"{stage}-frames") as scratch:
        empty = shard_segments(SHARD_ROWS.empty_table(), curated)
        frame = FramePartitions(scratch / "all", _manifest_documents(ctx), empty, finish=shard_document_facts)
        for rows in shard_row_batches(ctx.zones.shards, mode, stage):
            segments = shard_segments(rows, curated)
            frame.add(segments)
            copies.update(segments["source"][segments["doc_token_start"].eq(0).fillna(False)].dropna())
            splits.update(rows.column("split").drop_null().to_pylist())
            shard_rows += rows.num_rows
        outcome = validate_partitions(context, suite, "all", frame, parameters, ctx.run_id)
    _, problems = _triage(outcome, suite)
    for source, n in sorted(copies.items()):
        counts = report.counts(str(source))
        counts.input = counts.output = n
    report.details["splits"] = dict(sorted(splits.items()))
    _finish(report, context, [outcome])
    log.info("%s: %d shard rows, %d document segments validated (mode %s)", stage, shard_rows, frame.rows, mode)
    _fail_if(stage, {"all": problems} if problems else {})
    return report

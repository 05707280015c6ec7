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

import logging
import shutil
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.data_context import FileDataContext

from medcurate.core.context import RunContext, StageFailed, StageReport
from medcurate.core.listing import list_inputs
from medcurate.core.names import SOURCE_KINDS
from medcurate.core.quarantine import QuarantineWriter, quarantined_upstream
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, LEGAL_BASES, RAW_DOCUMENT_SCHEMA
from medcurate.core.zones import publish_dir, write_parquet
from pipelines.quality.curate_pipeline import build_pipeline, minimum_rows, previous_counts, save_counts
from pipelines.quality.curation_config import curation_config
from pipelines.quality.dedup import published_entries
from pipelines.quality.dedup_index import PublishedIndex, index_path, save_index
from pipelines.quality.frames import curated_frame, document_frame, shard_frame
from pipelines.quality.gx_context import ValidationOutcome, open_context, publish_data_docs, validate_frame
from pipelines.quality.steps import Ledger, run_steps
from pipelines.quality.suites import SuiteConfig, load_suites
from pipelines.quality.zone_io import (
    read_parts,
    read_shard_rows,
    relaxed,
    zone_doc_ids,
)

log = logging.getLogger(__name__)

QUARANTINED_EARLIER = "quarantined_earlier"


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
    """Validate each source's raw parts with the "raw" suite; quarantine failing rows, fail broken batches."""
    stage = "validate_raw"
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suite = load_suites()["raw"]
    context = open_context(ctx.zones.governance)
    writer = QuarantineWriter(ctx.zones, stage, ctx.run_id)
    outcomes, problems = [], {}
    for source in ctx.spec.sources:
        parts = read_parts(ctx.zones.raw / source.name, RAW_DOCUMENT_SCHEMA, stage)
        table = pa.concat_tables([relaxed(RAW_DOCUMENT_SCHEMA).empty_table(), *(t for _, t in parts)])
        # An empty source is fine only when it has no input; otherwise the suite's row count check fails it.
        if table.num_rows == 0 and not list_inputs(source, ctx.spec.base_dir).files:
            continue
        outcome = validate_frame(
            context, suite, source.name, document_frame(table), _document_parameters(ctx), ctx.run_id
        )
        outcomes.append(outcome)
        rows, source_problems = _triage(outcome, suite)
        if source_problems:
            problems[source.name] = source_problems
        _quarantine_rows(writer, source.name, table, rows)
        counts = report.counts(source.name)
        counts.input = table.num_rows
        counts.output = table.num_rows - len(rows)
        for reason, _ in rows.values():
            counts.remove(reason)
    writer.flush()
    _finish(report, context, outcomes)
    log.info("%s: %d documents validated, %d quarantined", stage, report.total_input, writer.count())
    _fail_if(stage, problems)
    return report


def _live_deid_docs(ctx: RunContext, source: str, skip: set[str], report: StageReport) -> pa.Table:
    """A source's de-identified documents minus those an earlier stage quarantined (counted as such)."""
    counts = report.counts(source)
    skip_ids = pa.array(sorted(skip), pa.string())
    tables = [relaxed(DEID_DOCUMENT_SCHEMA).empty_table()]
    for _, table in read_parts(ctx.zones.deid / source, DEID_DOCUMENT_SCHEMA, "curate"):
        counts.input += table.num_rows
        kept = table.filter(pc.invert(pc.fill_null(pc.is_in(table["doc_id"], skip_ids), False)))
        if kept.num_rows < table.num_rows:
            counts.remove(QUARANTINED_EARLIER, table.num_rows - kept.num_rows)
        tables.append(kept)
    return pa.concat_tables(tables)


def _validate_docs(
    ledger: Ledger,
    step: str,
    docs: list[dict],
    outcome: ValidationOutcome,
    suite: SuiteConfig,
) -> tuple[list[dict], list[str]]:
    """Quarantine the rows a suite failed (through the ledger); return the passing rows and batch problems."""
    rows, problems = _triage(outcome, suite)
    for row, (reason, detail) in sorted(rows.items()):
        ledger.drop(docs[row], step, reason, detail)
    passing = [doc for index, doc in enumerate(docs) if index not in rows]
    ledger.count(step, docs, passing)
    return passing, problems


def curate(ctx: RunContext) -> StageReport:
    """De-identified zone -> curated zone, through the curate steps, each accounting for what it drops.

    1. GX "deid" suite per source (record failures quarantined, broken batches fail the stage);
    2. residual-PHI gate, 3. filters, 4. exact / near / copy-forward dedup, 5. benchmark decontamination
       (curate_pipeline.py), every drop quarantined with its step and reason;
    6. GX "curated" suite on what would be published: schema facts, bounds, value sets, a raw parent for
       every document, and no source falling by more than ``quality.max_source_drop`` from the last run.

    Output is written to a staging directory and swapped in only when every source passed, so a failed
    batch publishes nothing and a crash never leaves a half-written curated zone.  The dedup index and the
    per-source counts under ``governance/`` are updated only after publishing.
    """
    stage = "curate"
    config = curation_config(ctx.spec)
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suites = load_suites()
    context = open_context(ctx.zones.governance)
    skip = quarantined_upstream(ctx.zones, stage)
    writer = QuarantineWriter(ctx.zones, stage, ctx.run_id)
    ledger = Ledger(writer, report)
    staging = ctx.zones.root / f".curated.{ctx.run_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    parameters = _document_parameters(ctx)
    outcomes, problems, validated, docs = [], {}, [], []
    for source in ctx.spec.sources:
        table = _live_deid_docs(ctx, source.name, skip, report)
        # Nothing to curate is fine when every raw document of the source is accounted for in quarantine;
        # an empty table while raw documents are still live means they were lost: the suite fails it.
        if table.num_rows == 0 and not zone_doc_ids(ctx.zones.raw / source.name) - skip:
            continue
        outcome = validate_frame(context, suites["deid"], source.name, document_frame(table), parameters, ctx.run_id)
        outcomes.append(outcome)
        passing, source_problems = _validate_docs(ledger, "gx_deid", table.to_pylist(), outcome, suites["deid"])
        if source_problems:
            problems[source.name] = source_problems
        validated.append(source.name)
        docs.extend(passing)

    published: dict[str, list[dict]] = {}
    pipeline = None
    if not problems:
        previous = PublishedIndex.load(ctx.zones.governance, config.dedup, {d["doc_id"] for d in docs})
        pipeline = build_pipeline(ctx, config, previous)
        docs = run_steps(pipeline.steps, docs, ledger)
        earlier = previous_counts(ctx.zones.governance)
        licenses = sorted({s.license for s in ctx.spec.sources})
        for name in validated:
            source_docs = [d for d in docs if d["source"] == name]
            table = pa.Table.from_pylist(source_docs, schema=relaxed(DEID_DOCUMENT_SCHEMA))
            frame = curated_frame(table, zone_doc_ids(ctx.zones.raw / name))
            bound = {
                **parameters,
                "licenses": licenses,
                "min_rows": minimum_rows(earlier.get(name), config.max_source_drop),
            }
            outcome = validate_frame(context, suites["curated"], name, frame, bound, ctx.run_id)
            outcomes.append(outcome)
            published[name], source_problems = _validate_docs(
                ledger, "gx_curated", source_docs, outcome, suites["curated"]
            )
            if source_problems:
                problems[name] = source_problems
    writer.flush()
    _finish(report, context, outcomes)
    report.details["curation_steps"] = ledger.steps_summary()
    if pipeline is not None:
        report.details.update(pipeline.details())
    if problems:
        log.info("%s: batch failed for %d source(s), nothing published", stage, len(problems))
        _fail_if(stage, problems)
    for name, source_docs in published.items():
        report.counts(name).output = len(source_docs)
        write_parquet(
            pa.Table.from_pylist(source_docs, schema=DEID_DOCUMENT_SCHEMA), staging / name / "part-00000.parquet"
        )
    publish_dir(staging, ctx.zones.curated)
    all_published = [d for source_docs in published.values() for d in source_docs]
    entries = published_entries(all_published, pipeline.exact, pipeline.near, ctx.run_id)
    report.details["dedup_index"] = {
        "path": str(index_path(ctx.zones.governance)),
        "entries": save_index(ctx.zones.governance, config.dedup, previous, entries),
    }
    save_counts(ctx.zones.governance, ctx.run_id, {name: len(d) for name, d in published.items()})
    report.details["curated"] = str(ctx.zones.curated)
    log.info("%s: %d documents in, %d curated", stage, report.total_input, report.total_output)
    return report


def validate_shards(ctx: RunContext) -> StageReport:
    """Validate every document segment of all shard rows in one checkpoint; any failure is fatal.

    Both shard modes are read as segments (``zone_io.read_shard_rows``), so one suite covers them: a
    documents-mode row is one segment, a packed row one per document piece.  The report counts document
    copies by source (a packed continuation is not counted again) and shard rows by split.
    """
    stage = "validate_shards"
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suite = load_suites()["shards"]
    context = open_context(ctx.zones.governance)
    mode = ctx.spec.shard.mode
    rows = read_shard_rows(ctx.zones.shards, mode, stage)
    frame = shard_frame(rows, zone_doc_ids(ctx.zones.curated))
    parameters = {"splits": list(ctx.spec.splits), "max_row_tokens": ctx.spec.seq_len if mode == "packed" else None}
    outcome = validate_frame(context, suite, "all", frame, parameters, ctx.run_id)
    _, problems = _triage(outcome, suite)
    copies = frame[frame["doc_token_start"].eq(0).fillna(False)]
    for source, n in copies["source"].value_counts().sort_index().items():
        counts = report.counts(str(source))
        counts.input = counts.output = int(n)
    split_counts = rows.column("split").to_pandas().value_counts().sort_index()
    report.details["splits"] = {str(k): int(v) for k, v in split_counts.items()}
    _finish(report, context, [outcome])
    log.info("%s: %d shard rows, %d document segments validated (mode %s)", stage, rows.num_rows, len(frame), mode)
    _fail_if(stage, {"all": problems} if problems else {})
    return report

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

from medcurate.context import RunContext, StageFailed, StageReport
from medcurate.quarantine import QuarantineWriter, quarantined_doc_ids
from medcurate.schema import DEID_DOCUMENT_SCHEMA, LEGAL_BASES, RAW_DOCUMENT_SCHEMA, SOURCE_KINDS
from medcurate.zones import publish_dir, write_parquet
from pipelines.quality.frames import document_frame, shard_frame
from pipelines.quality.gx_context import ValidationOutcome, data_docs_index, open_context, validate_frame
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
            source_uri=table["source_uri"][row].as_py(),
            source_sha256=table["source_sha256"][row].as_py(),
            position=table["position"][row].as_py(),
            doc_id=table["doc_id"][row].as_py(),
            reason=reason,
            detail=detail,
        )


def _finish(report: StageReport, context: FileDataContext, outcomes: Iterable[ValidationOutcome]) -> None:
    report.details["validations"] = [o.summary() for o in outcomes]
    report.details["data_docs"] = data_docs_index(context)


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
        if table.num_rows == 0 and not source.files(ctx.spec.base_dir):
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


def curate(ctx: RunContext) -> StageReport:
    """Validate the de-identified zone with the "deid" suite and publish the passing rows to ``curated/``.

    Output is written to a staging directory and swapped in only when every source passed, so a failed
    batch publishes nothing and a crash never leaves a half-written curated zone.
    """
    stage = "curate"
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suite = load_suites()["deid"]
    context = open_context(ctx.zones.governance)
    skip = quarantined_doc_ids(ctx.zones, exclude_stage=stage)
    skip_ids = pa.array(sorted(skip), pa.string())
    writer = QuarantineWriter(ctx.zones, stage, ctx.run_id)
    staging = ctx.zones.root / f".curated.{ctx.run_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    outcomes, problems = [], {}
    for source in ctx.spec.sources:
        source_dir = ctx.zones.deid / source.name
        counts = report.counts(source.name)
        kept_parts = []
        for path, table in read_parts(source_dir, DEID_DOCUMENT_SCHEMA, stage):
            counts.input += table.num_rows
            kept = table.filter(pc.invert(pc.fill_null(pc.is_in(table["doc_id"], skip_ids), False)))
            if kept.num_rows < table.num_rows:
                counts.remove(QUARANTINED_EARLIER, table.num_rows - kept.num_rows)
            kept_parts.append((path.relative_to(source_dir), kept))
        table = pa.concat_tables([relaxed(DEID_DOCUMENT_SCHEMA).empty_table(), *(t for _, t in kept_parts)])
        # Nothing to curate is fine when every raw document of the source is accounted for in quarantine;
        # an empty table while raw documents are still live means they were lost: the suite fails it.
        if table.num_rows == 0 and not zone_doc_ids(ctx.zones.raw / source.name) - skip:
            continue
        outcome = validate_frame(
            context, suite, source.name, document_frame(table), _document_parameters(ctx), ctx.run_id
        )
        outcomes.append(outcome)
        rows, source_problems = _triage(outcome, suite)
        if source_problems:
            problems[source.name] = source_problems
        _quarantine_rows(writer, source.name, table, rows)
        for reason, _ in rows.values():
            counts.remove(reason)
        offset = 0
        for relative, part in kept_parts:
            passing = [offset + i not in rows for i in range(part.num_rows)]
            offset += part.num_rows
            published = part.filter(pa.array(passing, pa.bool_())).cast(DEID_DOCUMENT_SCHEMA)
            counts.output += published.num_rows
            write_parquet(published, staging / source.name / relative)
    writer.flush()
    _finish(report, context, outcomes)
    log.info("%s: %d documents in, %d curated", stage, report.total_input, report.total_output)
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        _fail_if(stage, problems)
    publish_dir(staging, ctx.zones.curated)
    report.details["curated"] = str(ctx.zones.curated)
    return report


def validate_shards(ctx: RunContext) -> StageReport:
    """Validate all shard rows in one checkpoint (doc_ids are unique across splits); any failure is fatal."""
    stage = "validate_shards"
    report = StageReport(stage=stage, run_id=ctx.run_id)
    suite = load_suites()["shards"]
    context = open_context(ctx.zones.governance)
    table = read_shard_rows(ctx.zones.shards, stage)
    frame = shard_frame(table, zone_doc_ids(ctx.zones.curated))
    outcome = validate_frame(context, suite, "all", frame, {"splits": list(ctx.spec.splits)}, ctx.run_id)
    _, problems = _triage(outcome, suite)
    for source, n in frame["source"].value_counts().sort_index().items():
        counts = report.counts(str(source))
        counts.input = counts.output = int(n)
    report.details["splits"] = {str(k): int(v) for k, v in frame["split"].value_counts().sort_index().items()}
    _finish(report, context, [outcome])
    log.info("%s: %d shard rows validated", stage, len(frame))
    _fail_if(stage, {"all": problems} if problems else {})
    return report

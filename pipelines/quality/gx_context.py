"""The project's file-backed GX context under ``governance/gx/`` and one way to validate a source's frame with
it, a partition at a time (frame_partitions.py), stored as one result (gx_merge.py).

The context is re-opened by every stage and every object in it (data source, asset, batch definition,
suite) is get-or-created / add-or-updated, so a second run, a retried
Airflow task or a changed ``suites.yaml`` all work against the same directory.  Results and Data Docs
accumulate there, one validation per (suite, source) per run, named by the medcurate run id.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import great_expectations as gx
import pandas as pd
from great_expectations.core.expectation_validation_result import (
    ExpectationSuiteValidationResult,
    ExpectationValidationResult,
)
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context import FileDataContext, data_context_variables
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.validator.v1_validator import Validator
from great_expectations.validator.validator import calc_validation_statistics

from pipelines.quality.data_docs_offline import make_offline
from pipelines.quality.frame_partitions import FramePartitions
from pipelines.quality.frames import INDEX_COLUMNS
from pipelines.quality.gx_merge import is_row_count, merge_row_wise
from pipelines.quality.suites import SuiteConfig

# GX names this module's logger by file path, outside the "great_expectations" hierarchy.
logging.getLogger(data_context_variables.__file__).setLevel(logging.WARNING)

QUIET_PROGRESS_BARS = {"globally": False, "metric_calculations": False}
DATASOURCE = "medcurate"
BATCH_DEFINITION = "whole_frame"


def open_context(governance: Path) -> FileDataContext:
    """The GX project at ``governance/gx``: quiet (no progress bars, no analytics), created on first use."""
    governance.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(governance))
    if context.variables.progress_bars != QUIET_PROGRESS_BARS or context.config.analytics_enabled is not False:
        context.variables.progress_bars = ProgressBarsConfig(**QUIET_PROGRESS_BARS)
        context.config.analytics_enabled = False
        context.variables.save()
    return context


def publish_data_docs(context: FileDataContext) -> str:
    """Make the local Data Docs site readable offline and return the filesystem path of its index.html.

    GX renders the whole site from its templates (CDN links included), so this runs once a stage's
    validations are stored.
    """
    context.build_data_docs()
    index = Path(unquote(urlparse(context.get_docs_sites_urls()[0]["site_url"]).path))
    make_offline(index.parent)
    return str(index)


@dataclass
class ValidationOutcome:
    """What a stage needs from one GX run; ``row_failures`` maps frame row -> failed expectations."""

    suite: str
    source: str
    success: bool
    evaluated: int
    failed_expectations: Counter[str] = field(default_factory=Counter)
    # Failures of the batch as a whole (row count, an expectation that raised), as (type, column) pairs.
    batch_failures: list[tuple[str, str | None]] = field(default_factory=list)
    row_failures: dict[int, list[tuple[str, str | None]]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "source": self.source,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed_expectations": dict(sorted(self.failed_expectations.items())),
        }


def _batch_definition(context: FileDataContext, asset_name: str) -> Any:
    try:
        datasource = context.data_sources.get(DATASOURCE)
    except KeyError:
        datasource = context.data_sources.add_pandas(DATASOURCE)
    try:
        asset = datasource.get_asset(asset_name)
    except LookupError:
        asset = datasource.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def validate_partitions(
    context: FileDataContext,
    suite: SuiteConfig,
    source: str,
    frame: FramePartitions,
    parameters: dict[str, Any],
    run_name: str,
) -> ValidationOutcome:
    """Run ``suite`` over a source's frame a partition at a time and store one merged result for it.

    GX validates each partition (its row-wise expectations) and, once, a frame of the source's row count and no
    columns (its row-count expectations); gx_merge.py turns those into the one result an auditor reads in Data
    Docs (built once per stage by ``publish_data_docs``)."""
    name = f"{suite.name}-{source}"
    context.suites.add_or_update(suite.build())
    definition = _batch_definition(context, name)
    expectations = suite.expectations_built()
    counted = [is_row_count(e) for e in expectations]
    row_count = gx.ExpectationSuite(
        name=suite.name, expectations=[e for e, c in zip(expectations, counted, strict=True) if c]
    )
    row_wise = gx.ExpectationSuite(
        name=suite.name, expectations=[e for e, c in zip(expectations, counted, strict=True) if not c]
    )
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": INDEX_COLUMNS}
    per_partition: list[list[ExpectationValidationResult]] = []
    meta: dict[str, Any] = {}
    batch_id = name
    for partition in frame.frames():
        validator = Validator(definition, result_format, {"dataframe": partition})
        result = validator.validate_expectation_suite(row_wise, parameters)
        per_partition.append(result.results)
        meta, batch_id = meta or dict(result.meta), result.batch_id or batch_id
    merged = iter([merge_row_wise(list(parts)) for parts in zip(*per_partition, strict=True)])
    no_columns = pd.DataFrame(index=pd.RangeIndex(frame.rows))
    counts = iter(
        Validator(definition, result_format, {"dataframe": no_columns})
        .validate_expectation_suite(row_count, parameters)
        .results
    )
    results = [next(counts) if c else next(merged) for c in counted]
    _store(context, suite.name, batch_id, results, meta, frame, run_name)
    return _outcome(suite.name, source, frame.rows, results)


def _store(
    context: FileDataContext,
    suite_name: str,
    batch_id: str,
    results: list[ExpectationValidationResult],
    meta: dict[str, Any],
    frame: FramePartitions,
    run_name: str,
) -> None:
    """Keep the merged result in the project's validation store, where Data Docs finds it."""
    run_id = RunIdentifier(run_name=run_name, run_time=datetime.now(UTC))
    statistics = calc_validation_statistics(results)
    merged = ExpectationSuiteValidationResult(
        results=results,
        success=statistics.success,
        suite_name=suite_name,
        statistics={
            "evaluated_expectations": statistics.evaluated_expectations,
            "successful_expectations": statistics.successful_expectations,
            "unsuccessful_expectations": statistics.unsuccessful_expectations,
            "success_percent": statistics.success_percent,
        },
        meta={
            **meta,
            # GX fingerprints the data of one batch; here that would be one partition's, which describes nothing.
            "batch_markers": {k: v for k, v in meta.get("batch_markers", {}).items() if k != "pandas_data_fingerprint"},
            "run_id": run_id,
            "validation_time": run_id.run_time,
            "batch_parameters": {"rows": frame.rows, "partitions": frame.count},
        },
        batch_id=batch_id,
    )
    suite_id = ExpectationSuiteIdentifier(name=suite_name)
    context.validation_results_store.store_validation_results(
        suite_validation_result=merged,
        suite_validation_result_identifier=ValidationResultIdentifier(
            batch_identifier=batch_id, expectation_suite_identifier=suite_id, run_id=run_id
        ),
        expectation_suite_identifier=suite_id,
    )


def _outcome(suite: str, source: str, rows: int, results: list[ExpectationValidationResult]) -> ValidationOutcome:
    outcome = ValidationOutcome(suite=suite, source=source, success=all(r.success for r in results), evaluated=rows)
    for expectation_result in results:
        if expectation_result.success:
            continue
        config = expectation_result.expectation_config
        column = config.kwargs.get("column", config.kwargs.get("column_A"))
        details = expectation_result.result or {}
        index_list = details.get("unexpected_index_list")
        if index_list is None:  # table-level expectation, or the check itself raised
            outcome.failed_expectations[config.type] += 1
            outcome.batch_failures.append((config.type, column))
            continue
        outcome.failed_expectations[config.type] += int(details.get("unexpected_count", len(index_list)))
        for entry in index_list:
            outcome.row_failures[int(entry["row"])].append((config.type, column))
    return outcome

"""The project's file-backed GX context under ``governance/gx/`` and one way to validate a frame with it.

The context is re-opened by every stage and every object in it (data source, asset, batch definition,
suite, validation definition, checkpoint) is get-or-created / add-or-updated, so a second run, a retried
Airflow task or a changed ``suites.yaml`` all work against the same directory.  Results and Data Docs
accumulate there, one validation per (suite, source) per run, named by the medcurate run id.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import great_expectations as gx
import pandas as pd
from great_expectations.checkpoint import UpdateDataDocsAction
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context import FileDataContext, data_context_variables
from great_expectations.data_context.types.base import ProgressBarsConfig

from pipelines.quality.data_docs_offline import make_offline
from pipelines.quality.frames import INDEX_COLUMNS
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

    Every checkpoint run re-renders the whole site from GX's templates (CDN links included), so this runs
    once a stage's validations are done, on the site as it finally stands.
    """
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


def validate_frame(
    context: FileDataContext,
    suite: SuiteConfig,
    source: str,
    frame: pd.DataFrame,
    parameters: dict[str, Any],
    run_name: str,
) -> ValidationOutcome:
    """Run ``suite`` over ``frame`` with one checkpoint (results stored, Data Docs rebuilt)."""
    name = f"{suite.name}-{source}"
    gx_suite = context.suites.add_or_update(suite.build())
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=_batch_definition(context, name), suite=gx_suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[validation],
            actions=[UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": INDEX_COLUMNS},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        run_id=RunIdentifier(run_name=run_name),
    )
    (validation_result,) = result.run_results.values()
    outcome = ValidationOutcome(
        suite=suite.name,
        source=source,
        success=bool(validation_result.success),
        evaluated=len(frame),
    )
    for expectation_result in validation_result.results:
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

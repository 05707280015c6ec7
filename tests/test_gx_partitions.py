"""Great Expectations a partition at a time (issue 14): real GX validates each partition of a source's frame,
and the one stored result, and the rows it fails, are those of the whole frame whatever the partitioning."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipelines.quality.frame_partitions import FramePartitions
from pipelines.quality.gx_context import ValidationOutcome, open_context, validate_partitions
from pipelines.quality.suites import SuiteConfig, load_suites

PARAMETERS = {"min_chars": 5, "max_chars": 1000, "source_kinds": ["pubmed"], "legal_bases": ["public"]}


def _frame(n: int) -> pd.DataFrame:
    """n documents; a few fail: a doc_id repeated far apart, a null id, a short text, a blank one."""
    doc_ids: list[str | None] = [f"doc-{i:04d}" for i in range(n)]
    doc_ids[n - 3] = doc_ids[2]  # the duplicate pair sits in different batches
    doc_ids[7] = None
    lengths = [100 + i for i in range(n)]
    lengths[11] = 2
    blank = [False] * n
    blank[13] = True
    return pd.DataFrame(
        {
            "row": range(n),
            "doc_id": doc_ids,
            "source_kind": ["pubmed"] * n,
            "legal_basis": ["public"] * n,
            "text_length": pd.array(lengths, dtype="Int64"),
            "text_is_blank": blank,
            "patient_key": [None] * n,
        }
    )


def _validate(tmp_path: Path, frame: pd.DataFrame, batch: int, rows_per_partition: int, run: str) -> ValidationOutcome:
    context = open_context(tmp_path / "governance")
    partitions = FramePartitions(tmp_path / run, len(frame), frame.iloc[:0], rows_per_partition)
    for start in range(0, len(frame), batch):
        partitions.add(frame.iloc[start : start + batch].reset_index(drop=True))
    return validate_partitions(context, load_suites()["raw"], "pubmed", partitions, PARAMETERS, run)


def test_outcome_does_not_depend_on_batches_or_partitions(tmp_path: Path) -> None:
    frame = _frame(200)
    whole = _validate(tmp_path, frame, batch=200, rows_per_partition=10_000, run="whole")
    cut = _validate(tmp_path, frame, batch=17, rows_per_partition=30, run="cut")
    assert whole.summary() == {**cut.summary()}
    assert dict(whole.row_failures) == dict(cut.row_failures)
    assert whole.row_failures[2] == whole.row_failures[197] == [("expect_column_values_to_be_unique", "doc_id")]
    assert whole.row_failures[7] == [("expect_column_values_to_not_be_null", "doc_id")]
    assert ("expect_column_values_to_be_between", "text_length") in whole.row_failures[11]
    assert whole.row_failures[13] == [("expect_column_values_to_be_in_set", "text_is_blank")]
    assert set(whole.row_failures) == {2, 7, 11, 13, 197}
    assert whole.evaluated == cut.evaluated == 200


def test_one_stored_result_per_source_with_the_whole_frame_counts(tmp_path: Path) -> None:
    frame = _frame(120)
    _validate(tmp_path, frame, batch=25, rows_per_partition=20, run="partitioned")
    context = open_context(tmp_path / "governance")
    keys = context.validation_results_store.list_keys()
    assert [k.run_id.run_name for k in keys] == ["partitioned"]
    stored = context.validation_results_store.get(keys[0])
    assert stored.meta["batch_parameters"] == {"rows": 120, "partitions": 6}
    by_type = {(r.expectation_config.type, r.expectation_config.kwargs.get("column")): r for r in stored.results}
    assert by_type[("expect_table_row_count_to_be_between", None)].result["observed_value"] == 120
    unique = by_type[("expect_column_values_to_be_unique", "doc_id")].result
    assert unique["element_count"] == 120
    assert unique["unexpected_count"] == 2
    assert [int(e["row"]) for e in unique["unexpected_index_list"]] == [2, 117]
    assert unique["unexpected_index_query"] == "df.filter(items=[2, 117], axis=0)"
    assert unique["partial_unexpected_counts"] == [{"value": "doc-0002", "count": 2}]
    assert unique["missing_count"] == 1 and unique["unexpected_percent"] == pytest.approx(100 * 2 / 119)


def test_an_empty_source_still_gets_every_expectation(tmp_path: Path) -> None:
    context = open_context(tmp_path / "governance")
    partitions = FramePartitions(tmp_path / "empty", 0, _frame(20).iloc[:0])
    outcome = validate_partitions(context, load_suites()["raw"], "pubmed", partitions, PARAMETERS, "empty")
    assert not outcome.success
    assert outcome.batch_failures == [("expect_table_row_count_to_be_between", None)]


@pytest.mark.parametrize(
    "expectation",
    [
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "source_kind"}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "text_length", "min_value": 0}},
    ],
)
def test_an_expectation_no_partition_can_judge_is_refused(tmp_path: Path, expectation: dict) -> None:
    suite = SuiteConfig(name="refused", max_failed_fraction=0.0, expectations=(expectation,))
    partitions = FramePartitions(tmp_path / "refused", 20, _frame(20).iloc[:0])
    partitions.add(_frame(20))
    with pytest.raises(ValueError, match="partition"):
        validate_partitions(open_context(tmp_path / "governance"), suite, "pubmed", partitions, {}, "refused")

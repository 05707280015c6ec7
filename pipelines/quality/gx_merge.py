"""One GX validation result per suite and source, from the results of the frame's partitions.

GX validates a source's frame a partition at a time (frame_partitions.py), but an auditor reads one result per
source and stage in Data Docs, and the stage triages one outcome.  This merges the partitions' results of each
expectation into the result GX would have given for the whole frame:

* a row-wise expectation (a column, column-pair or multicolumn *map* expectation) sums its counts, and its
  unexpected rows are the union of the partitions', in source row order;
* a row-wise check that compares rows with each other (uniqueness) is exact per partition only because every
  row of a doc_id is in one partition, so it must involve doc_id; another column is refused, not guessed;
* a row-count expectation is validated once by GX on a frame of the source's row count and no columns.

Any other kind of expectation (a column mean, a table's column set) cannot be judged a partition at a time,
and is refused with an error naming it.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from great_expectations.core.expectation_validation_result import ExpectationValidationResult
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    Expectation,
    MulticolumnMapExpectation,
)

ROW_WISE = (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
ROW_COUNT = ("expect_table_row_count_to_be_between", "expect_table_row_count_to_equal")
# Row-wise expectations that compare a row with other rows, and the column every one of them must involve.
CROSS_ROW = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
PARTITION_KEY = "doc_id"
# GX's default length of the "partial" lists shown in Data Docs.
PARTIAL = 20


def is_row_count(expectation: Expectation) -> bool:
    """True for the expectations validated on the row count; raises for one no partition scheme can judge."""
    kind = expectation.expectation_type
    if kind in ROW_COUNT:
        return True
    if not isinstance(expectation, ROW_WISE):
        raise ValueError(f"{kind} cannot be validated a partition at a time: use a row-wise or row-count expectation")
    if kind in CROSS_ROW:
        kwargs = expectation.configuration.kwargs
        columns = kwargs.get("column_list") or [kwargs.get("column")]
        if PARTITION_KEY not in columns:
            raise ValueError(f"{kind} on {columns} cannot be validated per partition, which is by {PARTITION_KEY}")
    return False


def merge_row_wise(parts: list[ExpectationValidationResult]) -> ExpectationValidationResult:
    """The whole frame's result of a row-wise expectation from its partitions' results (COMPLETE format)."""
    # A partition whose check raised has no row list (GX keeps the error in exception_info): that is the result.
    raised = next((p for p in parts if "unexpected_index_list" not in (p.result or {})), None)
    if raised is not None:
        return raised
    first = parts[0]
    result: dict[str, Any] = dict(first.result)
    for key in ("element_count", "unexpected_count", "missing_count"):
        if key in result:
            result[key] = sum(int(p.result.get(key) or 0) for p in parts)
    pairs = sorted(
        (
            (entry, value)
            for p in parts
            for entry, value in zip(p.result["unexpected_index_list"], p.result["unexpected_list"], strict=True)
        ),
        key=lambda pair: int(pair[0]["row"]),
    )
    index_list = [entry for entry, _ in pairs]
    values = [value for _, value in pairs]
    result.update(
        unexpected_list=values,
        unexpected_index_list=index_list,
        partial_unexpected_list=values[:PARTIAL],
        partial_unexpected_index_list=index_list[:PARTIAL],
        partial_unexpected_counts=_value_counts(values),
        unexpected_index_query=f"df.filter(items={[int(e['row']) for e in index_list]}, axis=0)",
    )
    result.update(_percents(result))
    return ExpectationValidationResult(
        success=_success(result, first.expectation_config.kwargs.get("mostly")),
        expectation_config=first.expectation_config,
        result=result,
        meta=first.meta,
        exception_info=first.exception_info,
    )


def _percents(result: dict[str, Any]) -> dict[str, float | None]:
    """GX's percentages, from the summed counts (unexpected_percent is of the non-missing values when GX
    counts missing ones, else of all)."""
    elements, unexpected = result["element_count"], result["unexpected_count"]
    share = lambda n, d: 100.0 * n / d if d else None  # noqa: E731
    if "missing_count" not in result:
        return {"unexpected_percent": share(unexpected, elements)}
    nonmissing = elements - result["missing_count"]
    return {
        "missing_percent": share(result["missing_count"], elements),
        "unexpected_percent": share(unexpected, nonmissing),
        "unexpected_percent_total": share(unexpected, elements),
        "unexpected_percent_nonmissing": share(unexpected, nonmissing),
    }


def _success(result: dict[str, Any], mostly: float | None) -> bool:
    unexpected = result["unexpected_count"]
    if not mostly or mostly >= 1:
        return unexpected == 0
    nonmissing = result["element_count"] - result.get("missing_count", 0)
    return nonmissing == 0 or 1 - unexpected / nonmissing >= mostly


def _value_counts(values: list[Any]) -> list[dict[str, Any]]:
    """GX's partial_unexpected_counts over all unexpected values: the most frequent first, at most PARTIAL."""
    counts: Counter[Any] = Counter()
    shown: dict[Any, Any] = {}
    for value in values:
        key = _key(value)
        counts[key] += 1
        shown.setdefault(key, value)
    return [{"value": shown[key], "count": n} for key, n in counts.most_common(PARTIAL)]


def _key(value: Any) -> Any:
    """A counting key: NaNs (which equal nothing) count as one, and an unhashable pair by its repr."""
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value

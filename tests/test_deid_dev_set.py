"""The text engine on real nursing notes: the PhysioNet deid gold standard's development half (read from
../shared, never copied into the repository; skipped where it is absent).

Two claims, from one run over the 1,450 notes (about two minutes on a busy core, hence ``slow``):

* the engine holds the recall and character precision it reached on these notes (a regression floor: a rule
  change that loses real PHI fails here even when the synthetic sets still pass);
* issue 12's done-when targets (recall >= 0.98 with years excluded, character precision >= 0.75), met on these
  notes since session 8 (recall 0.983, char precision 0.801); whether they hold on the held-out half is for
  that half to say.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.deid.evaluate import evaluate

DEV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "physionet-deid-dev" / "dev.jsonl"
# Measured on this set when the floor was set (docs/deidentification.md), less a small margin for ties.
FLOOR_RECALL = 0.980
FLOOR_CHAR_PRECISION = 0.799
FLOOR_LEAK_RATE = 0.027
TARGET_RECALL = 0.98
TARGET_CHAR_PRECISION = 0.75

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEV.exists(), reason="../shared/data/physionet-deid-dev/dev.jsonl not available"),
]


@pytest.fixture(scope="module")
def metrics() -> dict:
    return evaluate(DEV)


def test_dev_set_holds_the_measured_recall_and_precision(metrics):
    assert metrics["documents"] == 1450
    assert "DateYear" not in metrics["recall_by_label"]  # years are no PHI under Safe Harbor
    assert metrics["recall"] >= FLOOR_RECALL, metrics["recall_by_label"]
    assert metrics["char_precision"] >= FLOOR_CHAR_PRECISION, metrics["precision_by_label"]
    assert metrics["leak_rate"] <= FLOOR_LEAK_RATE, metrics["leak_rate_by_label"]


def test_dev_set_meets_the_issue_12_targets(metrics):
    assert metrics["recall"] >= TARGET_RECALL
    assert metrics["char_precision"] >= TARGET_CHAR_PRECISION

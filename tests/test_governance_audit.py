"""The hash-chained audit log: a clean chain verifies; an edit, a deletion and a reordering are each named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governance import audit
from medcurate.cli import main


def _log(tmp_path: Path, n: int = 6) -> Path:
    governance = tmp_path / "data" / "governance"
    for i in range(n):
        audit.append_event(governance, audit.STAGE_END, "run-1", {"stage": f"s{i}", "input": i, "output": i})
    return governance


def _lines(governance: Path) -> list[str]:
    return audit.audit_log_path(governance).read_text().splitlines()


def _write(governance: Path, lines: list[str]) -> None:
    audit.audit_log_path(governance).write_text("".join(line + "\n" for line in lines))


def test_clean_chain_verifies_and_links_every_event(tmp_path, capsys):
    governance = _log(tmp_path)
    result = audit.verify(governance)
    assert result.ok and result.events == 6
    events = audit.read_events(governance)
    assert [e["seq"] for e in events] == list(range(6))
    assert events[0]["prev_hash"] == audit.GENESIS_HASH
    assert all(e["prev_hash"] == p["hash"] for p, e in zip(events, events[1:], strict=False))
    assert {"who", "where", "time", "airflow_run_id", "run_id"} <= set(events[0])
    assert main(["audit", "verify", "--data-root", str(tmp_path / "data")]) == 0
    assert result.head_hash in capsys.readouterr().out


def test_edited_event_is_named(tmp_path, capsys):
    governance = _log(tmp_path)
    lines = _lines(governance)
    record = json.loads(lines[3])
    record["details"]["output"] = 999
    lines[3] = json.dumps(record)
    _write(governance, lines)
    result = audit.verify(governance)
    assert not result.ok and "seq 3 was edited" in result.problem
    assert main(["audit", "verify", "--data-root", str(tmp_path / "data")]) == 1
    assert "seq 3 was edited" in capsys.readouterr().err


def test_deleted_event_is_named(tmp_path):
    governance = _log(tmp_path)
    lines = _lines(governance)
    del lines[2]
    _write(governance, lines)
    result = audit.verify(governance)
    assert not result.ok and "seq 2 was deleted" in result.problem


def test_reordered_events_are_named(tmp_path):
    governance = _log(tmp_path)
    lines = _lines(governance)
    lines[1], lines[4] = lines[4], lines[1]
    _write(governance, lines)
    result = audit.verify(governance)
    assert not result.ok and "seq 1 was reordered" in result.problem


def test_rewritten_tail_is_caught_against_a_recorded_head(tmp_path):
    """Recomputing every hash after an edit passes the chain check, but not the head kept elsewhere."""
    governance = _log(tmp_path)
    recorded_head = audit.head(governance)["hash"]
    events = audit.read_events(governance)[:4]
    audit.audit_log_path(governance).unlink()
    for event in events:
        audit.append_event(governance, event["type"], event["run_id"], {**event["details"], "output": 0})
    assert audit.verify(governance).ok
    result = audit.verify(governance, expect_head=recorded_head)
    assert not result.ok and "expected head" in result.problem


@pytest.mark.parametrize("airflow_run", [None, "manual__2026-11-28T05:00:00+00:00"])
def test_events_carry_the_airflow_run_id(tmp_path, monkeypatch, airflow_run):
    if airflow_run:
        monkeypatch.setenv(audit.AIRFLOW_RUN_ENV, airflow_run)
    else:
        monkeypatch.delenv(audit.AIRFLOW_RUN_ENV, raising=False)
    event = audit.append_event(tmp_path, audit.RUN_START, "r", {})
    assert event["airflow_run_id"] == airflow_run

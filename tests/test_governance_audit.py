"""The hash-chained audit log: a clean chain verifies; an edit, a deletion and a reordering are each named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from governance import audit
from medcurate.cli import EXIT_NO_AUDIT_LOG, EXIT_USAGE, main


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


@pytest.mark.parametrize("state", ["absent", "empty", "blank lines"])
def test_missing_or_empty_log_is_a_failure_with_its_own_exit_code(tmp_path, capsys, state):
    """A deleted log or a mistyped --data-root must not read as "intact, 0 events"."""
    governance = tmp_path / "data" / "governance"
    governance.mkdir(parents=True)
    if state != "absent":
        audit.audit_log_path(governance).write_text("" if state == "empty" else "\n\n")
    result = audit.verify(governance)
    assert not result.ok and result.missing and result.events == 0
    assert main(["audit", "verify", "--data-root", str(tmp_path / "data")]) == EXIT_NO_AUDIT_LOG
    captured = capsys.readouterr()
    assert "intact" not in captured.out + captured.err
    assert "no audit log" in captured.err and "--data-root" in captured.err


def test_a_typo_in_the_data_root_is_not_intact(tmp_path, capsys):
    _log(tmp_path)
    assert main(["audit", "verify", "--data-root", str(tmp_path / "dta")]) == EXIT_NO_AUDIT_LOG
    assert "intact" not in capsys.readouterr().out


def test_head_verifies_in_full_and_by_unique_prefix(tmp_path, capsys):
    governance = _log(tmp_path)
    head = audit.head(governance)["hash"]
    data_root = str(tmp_path / "data")
    for given in (head, head[:16], head[: audit.MIN_HEAD_PREFIX], head.upper()):
        assert audit.verify(governance, expect_head=given).ok, given
        assert main(["audit", "verify", "--data-root", data_root, "--expect-head", given]) == 0
    assert "TAMPERED" not in capsys.readouterr().err


def test_a_short_or_ambiguous_head_is_a_usage_error_not_tampering(tmp_path, capsys):
    governance = _log(tmp_path)
    data_root = str(tmp_path / "data")
    assert main(["audit", "verify", "--data-root", data_root, "--expect-head", "abc"]) == EXIT_USAGE
    assert main(["audit", "verify", "--data-root", data_root, "--expect-head", "zzzzzzzzzz"]) == EXIT_USAGE
    assert "TAMPERED" not in capsys.readouterr().err
    # A prefix shared by two events' hashes: forge a second event whose hash starts like the head's.
    events = audit.read_events(governance)
    with pytest.raises(audit.HeadPrefixError, match="prefix of 2"):
        audit._expected_head_problem(
            [*events, {**events[0], "hash": events[-1]["hash"][:12] + "0" * 52}], events[-1]["hash"][:12]
        )


def test_an_unknown_prefix_is_reported_as_rewritten(tmp_path):
    governance = _log(tmp_path)
    head = audit.head(governance)["hash"]
    other = ("0" if head[0] != "0" else "1") + head[1:16]
    result = audit.verify(governance, expect_head=other)
    assert not result.ok and not result.missing and "not in the chain" in result.problem

"""The command line's own duties: its version, a help text for every argument, and where the governance
commands find the data root (an argument, the environment or a spec; never the current directory)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from medcurate.cli import EXIT_USAGE, build_parser, main


def _actions(parser: argparse.ArgumentParser, path: str = "medcurate"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_argument_has_help_text():
    missing = [f"{path} {action.dest}" for path, action in _actions(build_parser()) if not action.help]
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("medcurate ")


@pytest.mark.parametrize("command", [["audit", "verify"], ["lineage", "0" * 32]])
def test_governance_commands_never_take_the_data_root_from_the_current_directory(
    command: list[str], tmp_path: Path, monkeypatch, capsys
):
    (tmp_path / "medcurate-demo" / "data" / "governance").mkdir(parents=True)  # a demo's data root, here
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MEDCURATE_DATA_ROOT", raising=False)
    assert main(command) == EXIT_USAGE
    assert "no data root: give --data-root DIR, set $MEDCURATE_DATA_ROOT or give --spec SPEC" in capsys.readouterr().err


def test_the_data_root_comes_from_the_environment_or_the_spec(tmp_path: Path, monkeypatch, capsys):
    from governance import audit

    root = tmp_path / "elsewhere"
    (root / "governance").mkdir(parents=True)
    audit.append_event(root / "governance", audit.RUN_START, "r1", {})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDCURATE_DATA_ROOT", str(root))
    assert main(["audit", "verify"]) == 0
    assert "1 events" in capsys.readouterr().out
    monkeypatch.delenv("MEDCURATE_DATA_ROOT")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "data_root: elsewhere\nsources:\n  - {name: n, kind: notes_csv, paths: x, license: l, legal_basis: waiver}\n"
    )
    assert main(["audit", "verify", "--spec", str(spec)]) == 0


def test_erase_needs_a_spec(capsys):
    with pytest.raises(SystemExit) as done:
        main(["erase", "--source", "notes"])
    assert done.value.code == 2
    assert "--spec" in capsys.readouterr().err


@pytest.mark.slow
def test_run_sample_prints_every_removal_reason_and_quarantined_file_and_no_ray_noise(tmp_path: Path):
    """``medcurate run sample`` as an operator sees it: the summary table and nothing alarming from Ray."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MEDCURATE_PSEUDONYM_KEY", "RAY_ADDRESS")}
    medcurate = str(Path(sys.executable).parent / "medcurate")
    data_root = tmp_path / "data"
    result = subprocess.run(
        [medcurate, "run", "sample", "--data-root", str(data_root)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Token authentication" not in output and "core_worker.cc" not in output
    # The sample is where the DAGs' "sample" puts it, not in the current directory.
    assert (data_root / "sample-corpus" / "sample.yaml").exists() and not (tmp_path / "medcurate-demo").exists()

    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    rows = {}
    for line in lines[header + 2 : header + 10]:
        stage, given, kept, removed, _seconds, *reasons = line.split(maxsplit=5)
        listed = [int(part.rsplit(": ", 1)[1]) for part in reasons[0].split(", ")] if reasons else []
        assert sum(listed) == int(removed), line  # every reason is listed, so the counts add up
        rows[stage] = (int(given), int(kept), int(removed))
    assert rows["ingest"][2] >= 4  # the sample's bad records: more reasons than the three that used to show
    for stage in ("catalog", "report"):
        assert rows[stage][0] == rows[stage][1] > 0, stage
    quarantined = next(line for line in lines if line.startswith("quarantined files: "))
    assert "imaging" in quarantined and "pubmed malformed_xml: 1" in quarantined

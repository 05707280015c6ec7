"""The Airflow DAGs: they import fast, and a real `airflow dags test` run curates the sample end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medcurate.runner import STAGE_NAMES

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _airflow_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "GX_ANALYTICS_ENABLED": "False",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    env.pop("MEDCURATE_PSEUDONYM_KEY", None)  # the sample run must work with its own throwaway key
    return env


def test_dagbag_imports_without_errors_and_fast(tmp_path: Path):
    code = (
        "import time; from airflow.dag_processing.dagbag import DagBag; t=time.perf_counter(); "
        f"b=DagBag({str(DAGS)!r}); print(repr(time.perf_counter()-t)); print(repr(b.import_errors)); "
        "print(sorted(b.dags)); d=b.dags['curate_medical_corpus']; print([t.task_id for t in d.tasks])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=_airflow_env(tmp_path), capture_output=True, text=True, check=True
    ).stdout.splitlines()
    seconds, errors, dags, tasks = out[-4:]
    assert errors == "{}"
    assert float(seconds) < 1.0
    assert "curate_medical_corpus" in dags
    assert tasks == str(["prepare", *STAGE_NAMES, "finish"])


@pytest.mark.slow
def test_airflow_dags_test_curates_the_sample(tmp_path: Path):
    home = tmp_path / "airflow"
    home.mkdir()
    data_root = tmp_path / "data"
    env = _airflow_env(home)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=True)
    started = time.time()
    result = subprocess.run(
        [
            AIRFLOW,
            "dags",
            "test",
            "curate_medical_corpus",
            "-c",
            json.dumps({"spec": "sample", "data_root": str(data_root)}),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (data_root / "governance" / "report.html").stat().st_mtime >= started
    manifest = json.loads((data_root / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["tokens"] > 0
    stages = {p.stem for p in (data_root / "governance" / "stages").glob("*.json")}
    assert stages == set(STAGE_NAMES)
    runs = subprocess.run(
        [AIRFLOW, "dags", "list-runs", "curate_medical_corpus", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listing = re.search(r"^\[(\{|\])", runs, re.MULTILINE)  # the CLI logs warnings before its JSON
    assert listing, runs[-2000:]
    states = [run["state"] for run in json.loads(runs[listing.start() :].splitlines()[0])]
    assert states == ["success"]

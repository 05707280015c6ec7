"""The reader side of the shards installs without the pipeline's heavy dependencies (``pyproject.toml``'s base
dependencies): importing it must not import Airflow, Presidio, spaCy, Ray or Great Expectations."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIPELINE_ONLY = ("airflow", "presidio_analyzer", "presidio_anonymizer", "spacy", "ray", "great_expectations")
READER_MODULES = ("pipelines.shard.reader", "pipelines.shard.megatron")

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"reader imported pipeline-only package {{name}}")
        return None

sys.meta_path.insert(0, Blocker())
import {modules}
print("ok")
"""


def test_reader_imports_with_pipeline_packages_blocked():
    code = BLOCKER.format(blocked=PIPELINE_ONLY, modules=", ".join(READER_MODULES))
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_blocker_does_block():
    code = BLOCKER.format(blocked=PIPELINE_ONLY, modules="pipelines.deid.engine")  # imports presidio
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "reader imported pipeline-only package" in result.stderr


def test_base_dependencies_leave_the_pipeline_packages_to_the_pipeline_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    pipeline = " ".join(project["optional-dependencies"]["pipeline"]).lower()
    for package in ("apache-airflow", "presidio", "ray", "great-expectations", "spacy"):
        assert package not in base
        assert package in pipeline

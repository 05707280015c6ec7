"""The import graph says what the system is: stages meet only in the zones, the core and the shared formats.

Layers, from the ground up (README, "Architecture"):

* ``medcurate/core/``: the document record, zones, spec, keys, storage, run context; imports nothing above it;
* ``medcurate/formats/``: codecs several stages share (DICOM JSON, FHIR timeline, HL7 v2, dates in text);
* ``governance/``: evidence (audit, catalog, lineage, report); never imports a stage;
* ``pipelines/<stage>/``: ingest, deid, quality, shard; a stage never imports another stage;
* the top floor (``medcurate/runner.py``, ``erasure.py``, ``orchestration.py``, ``cli.py``, ``airflow_support.py``):
  runs the stages and may import anything.

Production code never imports the demo and test-data generators (``medcurate/sample/``); the demo's entry points
on the top floor are the exception.  The check reads the source with ``ast`` (no import runs), so it also sees
imports inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "deid", "quality", "shard")
# The top-floor modules that generate the demo's sample corpus.
SAMPLE_ENTRY_POINTS = {"medcurate/cli.py", "medcurate/orchestration.py"}


def imported_modules(path: Path, root: Path = REPO) -> list[str]:
    """Every module an ``import`` or ``from ... import`` in the file names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            # `from pkg import mod` imports pkg.mod when mod is a module.
            found.extend(f"{module}.{alias.name}" for alias in node.names)
    return found


def layer_violation(importer: str, imported: str) -> str | None:
    """Why ``importer`` (a repo-relative path) may not import ``imported`` (a dotted name), or None."""
    parts = importer.split("/")
    if (
        importer.startswith("medcurate/core/")
        and not imported.startswith("medcurate.core")
        and (imported.startswith(("medcurate", "pipelines", "governance")))
    ):
        return "the core imports nothing above it"
    if importer.startswith("medcurate/formats/") and imported.startswith(("pipelines", "governance")):
        return "the shared formats import only the core"
    if (
        importer.startswith("medcurate/formats/")
        and imported.startswith("medcurate.")
        and not (imported.startswith(("medcurate.core", "medcurate.formats")))
    ):
        return "the shared formats import only the core"
    if parts[0] == "governance" and imported.startswith("pipelines"):
        return "governance records evidence; it does not import a stage"
    if parts[0] == "governance" and imported.startswith(("medcurate.runner", "medcurate.erasure", "medcurate.cli")):
        return "governance does not import the top floor"
    if parts[0] == "pipelines" and parts[1] in STAGES:
        target = imported.split(".")
        if target[0] == "pipelines" and len(target) > 1 and target[1] in STAGES and target[1] != parts[1]:
            return f"the {parts[1]} stage imports the {target[1]} stage"
        if imported.startswith(("medcurate.runner", "medcurate.erasure", "medcurate.orchestration", "medcurate.cli")):
            return "a stage does not import the top floor"
    sample = imported.startswith("medcurate.sample")
    if sample and not importer.startswith("medcurate/sample/") and importer not in SAMPLE_ENTRY_POINTS:
        return "production code does not import the sample generators"
    return None


def production_files() -> list[Path]:
    return sorted(p for top in ("medcurate", "pipelines", "governance") for p in (REPO / top).rglob("*.py"))


def test_no_import_crosses_a_layer():
    problems = [
        f"{path.relative_to(REPO)} imports {module}: {why}"
        for path in production_files()
        for module in imported_modules(path)
        if (why := layer_violation(path.relative_to(REPO).as_posix(), module))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("importer", "source", "why"),
    [
        ("pipelines/deid/structured.py", "from pipelines.ingest.hl7v2 import Hl7v2Parser", "deid stage imports"),
        ("pipelines/quality/phi_gate.py", "import pipelines.deid.engine", "quality stage imports"),
        ("pipelines/shard/erase.py", "from ..quality import dedup_index", "shard stage imports"),
        ("governance/report.py", "from pipelines.shard import manifest", "governance records evidence"),
        ("medcurate/core/storage.py", "from governance.audit import seal", "the core imports nothing"),
        ("medcurate/core/zones.py", "from medcurate import runner", "the core imports nothing"),
        ("medcurate/formats/hl7v2.py", "from pipelines.ingest.base import RejectedRecord", "shared formats"),
        ("pipelines/deid/surrogates.py", "from medcurate.sample.people import FIRST_NAMES", "sample generators"),
    ],
)
def test_a_forbidden_import_is_reported(tmp_path, importer, source, why):
    """The check is not vacuous: each kind of forbidden import, written into a file, is caught."""
    reasons = _violations(tmp_path, importer, source)
    assert reasons and why in reasons[0]


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("pipelines/deid/structured.py", "from medcurate.formats.hl7v2 import Delimiters"),
        ("pipelines/quality/phi_gate.py", "from .raw_identifiers import searchable"),
        ("medcurate/erasure.py", "from pipelines.shard import erase"),
        ("medcurate/cli.py", "from medcurate.sample import generate_sample"),
        ("pipelines/ingest/stage.py", "from governance import audit"),
    ],
)
def test_an_allowed_import_is_not_reported(tmp_path, importer, source):
    assert _violations(tmp_path, importer, source) == []


def _violations(root: Path, importer: str, source: str) -> list[str]:
    path = root / importer
    path.parent.mkdir(parents=True)
    path.write_text(source + "\n", encoding="utf-8")
    return [r for m in imported_modules(path, root) if (r := layer_violation(importer, m))]

"""Source file names are PHI: no file outside raw/ and quarantine/ may carry one, nor any input path.

Synthea names each bundle ``Given123_Family456_<patient-uuid>.json`` and hospital exports name files
``SMITH_JOHN_<MRN>.csv``.  The whole pipeline runs on such files (one of them with a newline in its name that
would forge a log line) and every other file under the data root is searched, byte by byte and, for Parquet,
Arrow and DuckDB, value by value (compression cannot hide a hit).  The owner still gets from a document back
to its source file with ``medcurate lineage``.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from governance.catalog import catalog_path, connect
from medcurate.cli import main
from medcurate.core.hashing import sha256_file
from medcurate.core.log_text import quote_name
from medcurate.core.source_files import SourceFileIndex, mapping_path, resolve
from medcurate.core.zones import PHI_ZONES, Zones
from medcurate.runner import open_run, run_pipeline
from medcurate.sample import fhir, notes
from medcurate.sample.people import make_cohort

pytestmark = pytest.mark.slow

# fhir.write puts its first four patients in bundles and the fifth in NDJSON files.
PATIENTS = 5
SEED = 1313
NOBODY = 65534
FORGED = "\n2026-12-06 12:00:00,000 WARNING medcurate: FORGED-BY-A-FILE-NAME"

SPEC = """\
name: names-are-phi
sources:
  - {name: ehr, kind: fhir, paths: ["incoming/fhir/*.json", "incoming/fhir/*.ndjson"], license: synthetic,
     legal_basis: waiver}
  - {name: notes, kind: notes_csv, paths: ["incoming/notes/*.csv", "incoming/notes/*.csv.gz"], license: synthetic,
     legal_basis: waiver}
tokenizer: {vocab_size: 512}
seq_len: 128
"""


def _export_with_patient_file_names(export: Path) -> list[str]:
    """Write Synthea-style bundles and a notes export whose file names hold patient names and MRNs; returns the
    strings of those names that must not be published."""
    cohort = make_cohort(PATIENTS, SEED)
    fhir.write(export, cohort, SEED)
    notes.write(export, cohort, SEED)
    forbidden: list[str] = []
    fhir_dir = export / "incoming" / "fhir"
    for index, patient in enumerate(cohort[: fhir.BUNDLE_PATIENTS], start=1):
        bundle = fhir_dir / f"bundle-{index:02d}.json"
        patient_id = next(
            e["resource"]["id"]
            for e in json.loads(bundle.read_text())["entry"]
            if e["resource"]["resourceType"] == "Patient"
        )
        given_family = f"{patient.person.first}{100 + index}_{patient.person.last}{200 + index}"
        bundle.rename(fhir_dir / f"{given_family}_{patient_id}.json")
        forbidden += [given_family, patient_id]
    # A broken bundle whose name would forge a WARNING line if it were logged as it is.
    forged = f"Eve{SEED}_Mallory{SEED}{FORGED}.json"
    (fhir_dir / forged).write_text('{"resourceType": "Bundle", "entry": [')
    forbidden += [f"Eve{SEED}_Mallory{SEED}", "FORGED-BY-A-FILE-NAME"]
    notes_dir = export / "incoming" / "notes"
    renames = {"notes_part1.csv": ".csv", "notes_part2.csv.gz": ".csv.gz", "notes_truncated.csv.gz": "_old.csv.gz"}
    for patient, (old, suffix) in zip(cohort, renames.items(), strict=False):
        hospital_name = f"{patient.person.last.upper()}_{patient.person.first.upper()}_{patient.mrn}"
        (notes_dir / old).rename(notes_dir / f"{hospital_name}{suffix}")
        forbidden.append(hospital_name)
    forbidden += [str(p) for p in (export / "incoming").rglob("*") if p.is_file()]
    return [*forbidden, str(export / "incoming"), str(export)]


def _values(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.items():
            yield from _values(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _values(item)


def _decoded_text(path: Path) -> Iterator[str]:
    """Every string value of a Parquet, Arrow or DuckDB file (whatever its compression)."""
    if path.suffix == ".parquet":
        yield from _values(pq.read_table(path).to_pylist())
    elif path.suffix == ".arrow":
        with pa.ipc.open_stream(path) as reader:
            yield from _values(reader.read_all().to_pylist())
    elif path.suffix == ".duckdb":
        with duckdb.connect(str(path), read_only=True) as con:
            for (table,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall():
                yield from _values(con.execute(f'SELECT * FROM "{table}"').fetchall())


def _published_files(root: Path) -> list[Path]:
    phi = [root / zone for zone in PHI_ZONES]
    return [p for p in root.rglob("*") if p.is_file() and not any(p.is_relative_to(z) for z in phi)]


def test_no_source_name_or_path_outside_the_owner_only_zones(tmp_path: Path, ray_local, capsys, monkeypatch):
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", "names-are-phi-test-key-0123456789")
    export = tmp_path / "hospital-export"
    forbidden = _export_with_patient_file_names(export)
    (export / "spec.yaml").write_text(SPEC)
    ctx = open_run(export / "spec.yaml", data_root=tmp_path / "data")
    run_pipeline(ctx, progress=lambda _: None)
    root = ctx.zones.root

    # Every input file is named in the owner-only mappings, and only there.
    mapped = {
        path for source in ("ehr", "notes") for path in json.loads(mapping_path(ctx.zones, source).read_text()).values()
    }
    assert mapped == {str(p) for p in (export / "incoming").rglob("*") if p.is_file()}
    published = _published_files(root)
    kinds = {p.suffix for p in published}
    assert {".parquet", ".arrow", ".json", ".duckdb", ".html", ".log"} <= kinds, kinds
    hits = []
    for path in published:
        data = path.read_bytes()
        texts = list(_decoded_text(path))
        for needle in forbidden:
            if needle.encode() in data or any(needle in text for text in texts):
                hits.append((str(path.relative_to(root)), needle))
    assert not hits

    log_lines = (root / "governance" / "logs" / f"{ctx.run_id}.log").read_text().splitlines()
    assert not any("FORGED" in line for line in log_lines)
    ingest = json.loads((root / "governance" / "stages" / "ingest.json").read_text())
    files = ingest["details"]["input_files"]
    assert all(f["source_file"].startswith("src-") and len(f["sha256"]) == 64 for f in files)
    assert {f["status"] for f in files} == {"ingested", "quarantined"}

    # The owner follows a published document back to its source file; the mapping is owner-only.
    mapping = mapping_path(ctx.zones, "ehr")
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    with connect(catalog_path(ctx.zones)) as con:
        doc_id, file_id, sha256 = con.execute(
            "SELECT doc_id, source_file, input_sha256 FROM documents WHERE source = 'ehr' AND final_status = 'sharded' "
            "ORDER BY doc_id LIMIT 1"
        ).fetchone()
    source_path = json.loads(mapping.read_text())[file_id]
    assert sha256_file(Path(source_path)) == sha256 and Path(source_path).parent == export / "incoming" / "fhir"
    assert main(["lineage", doc_id, "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert file_id in out and f"path {quote_name(source_path)}" in out


@contextmanager
def _another_user(mapping: Path) -> Iterator[None]:
    """Act as a user who is not the mapping's owner.  Root reads any file, so root drops to ``nobody`` for the
    block; an ordinary user, who cannot, is barred by the mapping's mode instead."""
    if os.geteuid() != 0:
        mapping.chmod(0)
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_path_is_resolved_for_its_owner_and_otherwise_a_reason_is_given(tmp_path: Path):
    """The owner gets the path back, whatever bytes it holds; another user, a stale id or a missing raw zone get
    a reason."""
    zones = Zones(tmp_path / "data").ensure()
    index = SourceFileIndex(b"k" * 32)
    file_id = index.id_of(tmp_path / "SMITH_JOHN_12345678.csv")
    undecodable = tmp_path / os.fsdecode(b"DOE_JANE_\xff\n.csv")  # not UTF-8, and a newline
    other_id = index.id_of(undecodable)
    index.save(zones, "notes")
    assert resolve(zones, "notes", file_id).path == str((tmp_path / "SMITH_JOHN_12345678.csv").resolve())
    assert resolve(zones, "notes", other_id).path == str(undecodable.resolve()) and other_id != file_id
    assert "\n" not in quote_name(resolve(zones, "notes", other_id).path)
    assert resolve(zones, "notes", "src-0000000000000000").problem.endswith("(the source was re-ingested since)")
    with _another_user(mapping_path(zones, "notes")):
        found = resolve(zones, "notes", file_id)
    assert found.path is None and "owner-only" in found.problem
    assert resolve(zones, "pubmed", file_id).problem.startswith("no id -> path mapping")

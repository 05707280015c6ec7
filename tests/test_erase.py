"""Erasure on a copy of the session's sample run: a patient, then a source, by library, CLI and Airflow DAG."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import duckdb
import mlcroissant
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from governance import audit
from governance.catalog import catalog_path, connect
from medcurate.cli import main
from medcurate.core.hashing import merkle_root, sha256_file
from medcurate.core.keys import KEY_ENV, pseudonym
from medcurate.core.source_files import MAPPING_FILE
from medcurate.core.zones import read_zone
from medcurate.erasure import _stated_identifiers, erase, open_for_erasure, verify_erased
from medcurate.runner import DEMO_KEY_FILE
from pipelines.quality.dedup_index import index_path

pytestmark = pytest.mark.slow


def _copy_run(sample_run, target: Path) -> Path:
    shutil.copytree(sample_run.zones.root, target, symlinks=True)
    return target


def _parts(directory: Path) -> list[str]:
    return [str(p) for p in sorted(directory.rglob("*.parquet")) if not p.name.startswith(".")]


def _zone_ids(root: Path) -> set[str]:
    """doc_ids anywhere in the zones, the quarantine index and the shards."""
    found: set[str] = set()
    for zone in ("raw", "deid", "curated", "quarantine"):
        parts = [p for p in _parts(root / zone) if "/files/" not in p]
        if parts:
            found |= {r[0] for r in duckdb.execute("SELECT doc_id FROM read_parquet(?)", [parts]).fetchall() if r[0]}
    for arrow in (root / "shards").glob("*/data-*.arrow"):
        with pa.ipc.open_stream(arrow) as reader:
            found |= set(reader.read_all()["doc_id"].to_pylist())
    return found


def _patient_with_docs_in(root: Path, sources: set[str]) -> tuple[str, set[str]]:
    """A raw patient key whose documents span ``sources``, and its doc_ids (read from the raw zone)."""
    rows = duckdb.execute(
        "SELECT patient_key, list(DISTINCT source), list(doc_id) FROM read_parquet(?) WHERE patient_key IS NOT NULL "
        "GROUP BY patient_key ORDER BY patient_key",
        [_parts(root / "raw")],
    ).fetchall()
    key, _, ids = next(r for r in rows if sources <= set(r[1]))
    return key, set(ids)


def _indexed(root: Path, where: str, params: list) -> set[str]:
    """doc_ids of the cross-run dedup index (governance/dedup/published.parquet) matching ``where``."""
    sql = f"SELECT doc_id FROM read_parquet(?) WHERE {where}"
    return {r[0] for r in duckdb.execute(sql, [str(index_path(root / "governance")), *params]).fetchall()}


def _shard_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root / "shards").as_posix(): sha256_file(p) for p in (root / "shards").glob("*/data-*.arrow")}


@pytest.fixture(scope="module")
def patient_erased(sample_run, tmp_path_factory):
    root = _copy_run(sample_run, tmp_path_factory.mktemp("erase") / "data")
    ctx = open_for_erasure(sample_run.sample_dir / "sample.yaml", root, demo=True)
    key, doc_ids = _patient_with_docs_in(root, {"notes", "lab_hl7"})
    with connect(catalog_path(ctx.zones)) as con:
        held = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT shard_path FROM shard_rows WHERE list_contains(?, doc_id)", [sorted(doc_ids)]
            ).fetchall()
        }
    before = _shard_hashes(root)
    indexed = _indexed(root, "list_contains(?, doc_id)", [sorted(doc_ids)])
    files = _file_paths(ctx.zones)
    only_patient = {
        (source, file_id)
        for source, file_id, all_erased in duckdb.execute(
            "SELECT source, source_file, bool_and(list_contains(?, doc_id)) FROM read_parquet(?) GROUP BY ALL",
            [sorted(doc_ids), _parts(root / "raw")],
        ).fetchall()
        if all_erased
    }
    result = erase(ctx, patient_key=key)
    return {
        "ctx": ctx,
        "root": root,
        "key": key,
        "doc_ids": doc_ids,
        "held": held,
        "indexed": indexed,
        "before": before,
        "result": result,
        "files": files,
        "only_patient": only_patient,
    }


def _file_paths(zones) -> dict[tuple[str, str], str]:
    """(source, file id) -> path, from every source's owner-only mapping."""
    return {
        (mapping.parent.name, file_id): path
        for mapping in zones.raw.glob(f"*/{MAPPING_FILE}")
        for file_id, path in json.loads(mapping.read_text()).items()
    }


def test_patient_erasure_removes_every_record(patient_erased):
    result, doc_ids, root = patient_erased["result"], patient_erased["doc_ids"], patient_erased["root"]
    assert result.verified and not result.problems
    assert doc_ids
    assert not doc_ids & _zone_ids(root)
    assert result.subject == pseudonym(patient_erased["ctx"].secret_key, patient_erased["key"])
    with connect(catalog_path(patient_erased["ctx"].zones)) as con:
        left = con.execute("SELECT count(*) FROM documents WHERE patient_pseudonym = ?", [result.subject]).fetchone()
        erasures = con.execute("SELECT erasure_id, verified, documents_removed FROM erasures").fetchall()
    assert left[0] == 0
    assert erasures == [(result.erasure_id, True, len(doc_ids))]


def test_patient_erasure_empties_the_dedup_index_of_its_documents(patient_erased):
    """A published document left in the index would be the kept twin of a later copy, and its words recoverable."""
    root, result = patient_erased["root"], patient_erased["result"]
    assert patient_erased["indexed"], "the sample run must have published some of the patient's documents"
    assert result.removed_by_zone["dedup_index"] == len(patient_erased["indexed"])
    assert not _indexed(root, "list_contains(?, doc_id)", [sorted(patient_erased["doc_ids"])])
    assert _indexed(root, "true", []), "the other documents stay in the index"


def test_patient_erasure_forgets_the_paths_of_the_files_that_held_only_the_patient(patient_erased):
    """A file named after its one patient (a Synthea bundle, a DICOM file) must not outlive the patient's erasure
    in the owner-only id -> path mapping; files that still hold someone's records keep their path."""
    only_patient, before = patient_erased["only_patient"], patient_erased["files"]
    assert only_patient, "the erased patient must have a file of their own in the sample"
    after = _file_paths(patient_erased["ctx"].zones)
    assert after == {k: v for k, v in before.items() if k not in only_patient}
    assert patient_erased["result"].removed_by_zone["source_file_paths"] == len(only_patient)


def test_only_the_shards_that_held_the_patient_are_rewritten(patient_erased):
    root, before = patient_erased["root"], patient_erased["before"]
    result = patient_erased["result"]
    after = _shard_hashes(root)
    assert set(result.shards_rewritten) == patient_erased["held"]
    assert {p for p in before if before[p] != after[p]} == patient_erased["held"]
    assert len(before) > len(patient_erased["held"]), "the sample must leave some shards untouched"
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert {e["path"]: e["sha256"] for e in manifest["shards"]} == after
    assert manifest["merkle"]["root"] == merkle_root(after) == result.merkle_root_after != result.merkle_root_before
    for split in manifest["splits"]:
        ds = datasets.load_from_disk(str(root / "shards" / split))
        assert len(ds) == sum(e["rows"] for e in manifest["shards"] if e["split"] == split)
        assert not set(ds["doc_id"]) & patient_erased["doc_ids"]


def test_the_trainer_files_follow_the_erasure(patient_erased):
    """The dataset card states the counts of the rewritten manifest and the erasure; Croissant still validates."""
    shards, result = patient_erased["root"] / "shards", patient_erased["result"]
    manifest = json.loads((shards / "manifest.json").read_text())
    card = (shards / "README.md").read_text()
    assert f"erasures applied since the build: 1 ({result.erasure_id})" in card
    assert f"Merkle root of the shards `{result.merkle_root_after}`" in card
    for split, totals in manifest["totals"]["by_split"].items():
        assert f"| {split} | {totals['rows']} | {totals['documents']} |" in card
    dataset = mlcroissant.Dataset(jsonld=str(shards / "croissant.json"))
    assert not dataset.metadata.ctx.issues.errors and not dataset.metadata.ctx.issues.warnings


def test_erasure_is_audited_without_the_raw_key(patient_erased):
    governance = patient_erased["ctx"].zones.governance
    assert audit.verify(governance).ok
    last = audit.read_events(governance)[-1]
    assert last["type"] == audit.ERASURE and last["details"]["erasure_id"] == patient_erased["result"].erasure_id
    key = patient_erased["key"].encode()
    for path in governance.rglob("*"):
        if path.is_file() and path.suffix in {".jsonl", ".json", ".html", ".duckdb", ".log"}:
            assert key not in path.read_bytes(), path
    assert patient_erased["result"].erasure_id in (governance / "report.html").read_text()


def test_the_report_is_rebuilt_from_the_data_after_erasure(patient_erased, sample_run):
    """Documents in shards, the funnel and PHI counts follow the erasure, and the report names it."""
    governance = patient_erased["ctx"].zones.governance
    before = json.loads((sample_run.zones.governance / "report.json").read_text())
    after = json.loads((governance / "report.json").read_text())
    manifest = json.loads((patient_erased["root"] / "shards" / "manifest.json").read_text())
    erased = len(patient_erased["doc_ids"])

    def total(report: dict, column: str) -> int:
        return sum(row[column] for row in report["funnel"])

    assert total(after, "ingested") == total(before, "ingested") - erased
    assert after["documents_in_shards"] == manifest["totals"]["documents"] == total(after, "sharded")
    assert after["documents_in_shards"] < before["documents_in_shards"]
    assert sum(after["phi_by_type"].values()) < sum(before["phi_by_type"].values())
    assert [e["erasure_id"] for e in after["erasures"]] == [patient_erased["result"].erasure_id]
    html = (governance / "report.html").read_text()
    notice = html.split('id="erasure-notice"', 1)[1].split("</p>", 1)[0]
    assert patient_erased["result"].erasure_id in notice
    assert f"<b>{after['documents_in_shards']:,}</b>documents in shards" in html


def test_source_erasure_and_cli(patient_erased, monkeypatch, capsys):
    root, ctx = patient_erased["root"], patient_erased["ctx"]
    indexed = _indexed(root, "source = ?", ["pmc_oa"])
    assert indexed
    result = erase(ctx, source="pmc_oa")
    assert result.verified and result.documents_removed > 0
    assert result.removed_by_zone["dedup_index"] == len(indexed)
    assert not _indexed(root, "source = ?", ["pmc_oa"])
    assert not any(source == "pmc_oa" for source, _ in _file_paths(ctx.zones))
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    assert "pmc_oa" not in manifest["totals"]["by_source"]
    assert len(manifest["erasures"]) == 2
    # The CLI, with the key read from stdin so it stays out of the shell history and the process list.
    key, doc_ids = _patient_with_docs_in(root, {"notes"})
    monkeypatch.setenv(KEY_ENV, (root / DEMO_KEY_FILE).read_text().strip())
    monkeypatch.setattr(sys, "stdin", io.StringIO(key + "\n"))
    spec = str(patient_erased["ctx"].spec.base_dir / "sample.yaml")
    assert main(["erase", "--patient", "-", "--spec", spec, "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and key not in out
    assert not doc_ids & _zone_ids(root)


def test_erase_patient_dag_validates_the_key_and_erases(sample_run, tmp_path):
    from test_dags import AIRFLOW, _airflow_env

    root = _copy_run(sample_run, tmp_path / "data")
    key, doc_ids = _patient_with_docs_in(root, {"lab_hl7"})
    home = tmp_path / "airflow"
    home.mkdir()
    env = _airflow_env(home)
    env[KEY_ENV] = (root / DEMO_KEY_FILE).read_text().strip()
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=True)
    spec = str(sample_run.sample_dir / "sample.yaml")

    def dags_test(conf: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AIRFLOW, "dags", "test", "erase_patient", "-c", json.dumps(conf)],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    rejected = dags_test({"patient_key": "not a key; rm -rf", "spec": spec, "data_root": str(root)})
    assert rejected.returncode != 0
    assert doc_ids <= _zone_ids(root)
    done = dags_test({"patient_key": key, "spec": spec, "data_root": str(root)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not doc_ids & _zone_ids(root)
    assert audit.read_events(root / "governance")[-1]["airflow_run_id"]


def test_verification_looks_for_the_patients_stated_names(sample_run, tmp_path):
    """The patient's full name, as the HL7/DICOM records state it, is searched in the published data."""
    root = _copy_run(sample_run, tmp_path / "data")
    key, _ = _patient_with_docs_in(root, {"lab_hl7"})
    stated = _stated_identifiers([Path(p) for p in _parts(root / "raw")], key)
    names = sorted((n for n in stated if len(n.split()) >= 2 and "@" not in n and not n[0].isdigit()), key=len)
    assert names, "the HL7 PID header states the patient's name"
    ctx = open_for_erasure(sample_run.sample_dir / "sample.yaml", root, demo=True)
    assert verify_erased(ctx, set(), {names[0]}, None) == []
    # Plant the name (in lower case) in one curated document: verification must now find it.
    part = Path(_parts(root / "curated")[0])
    part.chmod(0o644)
    table = read_zone(part.parent)
    texts = table["text"].to_pylist()
    texts[0] = texts[0] + " seen with " + names[0].lower()
    pq.write_table(
        table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts, pa.large_string())), part
    )
    assert any("raw identifier" in p for p in verify_erased(ctx, set(), {names[0]}, None))


def test_verification_finds_documents_left_in_the_dedup_index(sample_run, tmp_path):
    root = _copy_run(sample_run, tmp_path / "data")
    ctx = open_for_erasure(sample_run.sample_dir / "sample.yaml", root, demo=True)
    doc_id = sorted(_indexed(root, "true", []))[0]
    assert "1 erased rows remain in the dedup index" in verify_erased(ctx, {doc_id}, set(), None)

"""A shard build killed with SIGKILL mid-run and started again ends byte-identical to an uninterrupted one.

The interrupted build runs as an Airflow task would (``medcurate stage shard SPEC --run-id X``) in its own
process group, on the test session's Ray cluster (``RAY_ADDRESS``, as on a real cluster); it is killed as
soon as its first shard completion record appears.  The target shard size is tiny (one sequence per shard),
so the build is cut between thousands of shards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
import ray
import yaml
from test_shard import SPLITS, tree_bytes

from medcurate.core.context import RunContext
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA, METADATA_FIELDS
from medcurate.core.spec import load_spec
from medcurate.core.zones import Zones, write_parquet
from pipelines.shard.progress import PROGRESS_DIR
from pipelines.shard.stage import run

RUN_ID = "run-resume"
KEY = "resume-test-key-0123456789abcdef"
WORDS = "fever cough dyspnea stable afebrile discharged follow-up clinic lisinopril metformin chest x-ray".split()


def _write_curated(root: Path, n_documents: int) -> None:
    zones = Zones(root).ensure()
    rows = []
    for i in range(n_documents):
        metadata = dict.fromkeys(METADATA_FIELDS)
        text = " ".join(WORDS[(i * 5 + k * 3) % len(WORDS)] for k in range(8 + i % 23)) + f" day {i % 17}."
        rows.append(
            {
                "doc_id": f"{i * 7919 % 100003:08x}{i:024x}",
                "source": "notes",
                "source_kind": "notes_csv",
                "source_file": "src-00000000000000aa",
                "source_sha256": "0" * 64,
                "position": f"line {i}",
                "record_index": i,
                "doc_type": "note",
                "text": text,
                "metadata": metadata,
                "license": "synthetic",
                "legal_basis": "waiver",
                "run_id": "run-curate",
                "patient_pseudonym": f"P{i // 3:020d}",
            }
        )
    for part in range(4):
        table = pa.Table.from_pylist(rows[part::4], schema=DEID_DOCUMENT_SCHEMA)
        write_parquet(table, zones.curated / "notes" / f"part-{part}.parquet")


def _spec(path: Path) -> Path:
    spec = {
        "sources": [
            {
                "name": "notes",
                "kind": "notes_csv",
                "paths": ["unused/*"],
                "license": "synthetic",
                "legal_basis": "waiver",
            }
        ],
        "splits": SPLITS,
        "seq_len": 32,
        "tokenizer": {"vocab_size": 300},
        "shard": {"mode": "packed", "target_shard_bytes": 1, "mixing": {"notes": 1.5}},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def _stage_command(spec: Path, data_root: Path) -> list[str]:
    cli = Path(sys.executable).with_name("medcurate")
    return [str(cli), "stage", "shard", str(spec), "--run-id", RUN_ID, "--data-root", str(data_root)]


def _completion_records(progress: Path) -> list[Path]:
    return sorted(p for p in progress.glob("*-*.json"))


@pytest.fixture(scope="module")
def resumed(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    spec = _spec(base / "spec.yaml")
    _write_curated(base / "interrupted", 1200)
    shutil.copytree(base / "interrupted" / "curated", base / "reference" / "curated")
    address = ray.get_runtime_context().gcs_address
    env = os.environ | {"MEDCURATE_PSEUDONYM_KEY": KEY, "RAY_ADDRESS": address}
    progress = base / "interrupted" / f".shards-staging/{PROGRESS_DIR}"

    log = (base / "killed.log").open("w")
    killed = subprocess.Popen(
        _stage_command(spec, base / "interrupted"), env=env, stdout=log, stderr=log, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not _completion_records(progress) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    records = [json.loads(p.read_text()) for p in _completion_records(progress)]
    completed_mtimes = {
        (r["split"], r["index"]): (base / "interrupted" / ".shards-staging" / r["path"]).stat().st_mtime_ns
        for r in records
    }

    restarted = subprocess.run(
        _stage_command(spec, base / "interrupted"), env=env, capture_output=True, text=True, timeout=900
    )
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    ref_ctx = RunContext(
        spec=load_spec(spec), zones=Zones(base / "reference").ensure(), run_id=RUN_ID, secret_key=KEY.encode()
    )
    run(ref_ctx)
    report = json.loads((base / "interrupted" / "governance" / "stages" / "shard.json").read_text())
    return base, killed.returncode, completed_mtimes, report


def test_killed_build_was_cut_mid_run(resumed):
    _, returncode, completed, report = resumed
    assert returncode == -signal.SIGKILL
    assert 0 < len(completed) < report["details"]["shard_count"]


def test_resumed_build_is_byte_identical_to_an_uninterrupted_one(resumed):
    base, _, _, _ = resumed
    interrupted, reference = tree_bytes(base / "interrupted" / "shards"), tree_bytes(base / "reference" / "shards")
    assert sorted(interrupted) == sorted(reference)
    assert [name for name in interrupted if interrupted[name] != reference[name]] == []
    assert not (base / "interrupted" / ".shards-staging").exists()
    # Nothing lost, nothing duplicated: every (document, copy) once, in exactly one split.
    seen: list[tuple[str, int]] = []
    for split in SPLITS:
        for shard in sorted((base / "interrupted" / "shards" / split).glob("data-*.arrow")):
            table = pa.ipc.open_stream(shard).read_all()
            columns = (table[name].to_pylist() for name in ("doc_ids", "doc_repeats", "doc_token_starts"))
            for ids, repeats, starts in zip(*columns, strict=True):
                seen += [(d, r) for d, r, start in zip(ids, repeats, starts, strict=True) if start == 0]
    manifest = json.loads((base / "interrupted" / "shards" / "manifest.json").read_text())
    assert len(seen) == len(set(seen)) == manifest["totals"]["documents"]


def test_restart_wrote_only_the_missing_shards(resumed):
    base, _, completed, report = resumed
    details = report["details"]
    assert details["shards_reused"] == len(completed)
    assert details["shards_reused"] + details["shards_written"] == details["shard_count"]
    manifest = json.loads((base / "interrupted" / "shards" / "manifest.json").read_text())
    shard_paths = {(entry["split"], int(entry["path"].split("-")[1])): entry["path"] for entry in manifest["shards"]}
    for key, mtime in completed.items():
        assert (base / "interrupted" / "shards" / shard_paths[key]).stat().st_mtime_ns == mtime

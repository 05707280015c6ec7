"""An object-store data root (s3://) through a local working copy, against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import fcntl
import json
import logging
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from governance import audit
from medcurate.cli import main
from medcurate.core import storage
from medcurate.core.names import STAGE_NAMES
from medcurate.core.run_lock import RootBusy, run_lock
from medcurate.core.zones import read_zone
from medcurate.erasure import erase, open_for_erasure
from medcurate.runner import open_run, run_pipeline, run_stage
from medcurate.sample import generate_sample

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server in this process, on a free port of 127.0.0.1; clients find it through AWS_ENDPOINT_URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in AWS_ENV.items():
            mp.setenv(name, value)
        mp.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, **_client_credentials())


@pytest.fixture
def bucket(s3) -> str:
    name = f"medcurate-{secrets.token_hex(4)}"
    s3.create_bucket(Bucket=name)
    return name


def _client_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


def _keys(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    return {k[len(prefix) + 1 :]: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def _worker(monkeypatch, tmp_path: Path, name: str) -> Path:
    """Switch to another worker's scratch: a fresh, empty place for working copies."""
    work = tmp_path / name
    monkeypatch.setenv(storage.WORK_DIR_ENV, str(work))
    return work


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_uris_and_local_paths_are_told_apart():
    assert storage.is_uri("s3://bucket/prefix") and storage.is_uri("file:///tmp/x")
    assert not storage.is_uri("/data/medcurate") and not storage.is_uri(Path("s3:/x")) and not storage.is_uri(None)


def test_push_and_pull_transfer_only_what_changed(monkeypatch, tmp_path, s3, bucket):
    uri = f"s3://{bucket}/corpus"
    _worker(monkeypatch, tmp_path, "worker-a")
    a = storage.working_copy(uri)
    _write(
        a.root,
        {
            "raw/notes/part-0.parquet": b"raw bytes",
            "deid/notes/part-0.parquet": b"deid bytes",
            "shards/train/part-0.arrow": b"shard",
            "governance/audit.log.jsonl": b"{}\n",
            "deid/notes/.part-1.parquet.tmp": b"half written",
        },
    )
    _write(a.directory / "data", {".shards-staging/x": b"staging, not a zone"})

    first = a.push()
    assert first.uploaded == [  # data files first, the audit log last; no temp file, nothing outside the zones
        "deid/notes/part-0.parquet",
        "raw/notes/part-0.parquet",
        "shards/train/part-0.arrow",
        "governance/audit.log.jsonl",
    ]
    assert set(_keys(s3, bucket, "corpus")) == {
        "raw/notes/part-0.parquet",
        "deid/notes/part-0.parquet",
        "shards/train/part-0.arrow",
        "governance/audit.log.jsonl",
    }
    assert a.push().uploaded == []

    # Same bytes written again (a new mtime) is no change; new bytes and a removed file are.
    (a.root / "raw/notes/part-0.parquet").write_bytes(b"raw bytes")
    (a.root / "deid/notes/part-0.parquet").write_bytes(b"deid bytes, rewritten")
    (a.root / "shards/train/part-0.arrow").unlink()
    second = a.push()
    assert second.uploaded == ["deid/notes/part-0.parquet"] and second.deleted == ["shards/train/part-0.arrow"]
    assert _keys(s3, bucket, "corpus")["deid/notes/part-0.parquet"] == b"deid bytes, rewritten"
    assert "shards/train/part-0.arrow" not in _keys(s3, bucket, "corpus")

    # Another worker starts empty, gets everything once, then only what a later push changed.
    _worker(monkeypatch, tmp_path, "worker-b")
    b = storage.working_copy(uri)
    assert b.directory != a.directory
    assert sorted(b.pull().downloaded) == sorted(_keys(s3, bucket, "corpus"))
    assert (b.root / "deid/notes/part-0.parquet").read_bytes() == b"deid bytes, rewritten"
    assert b.pull().downloaded == []
    (a.root / "governance/audit.log.jsonl").write_bytes(b"{}\n{}\n")
    (a.root / "raw/notes/part-0.parquet").unlink()
    a.push()
    again = b.pull()
    assert again.downloaded == ["governance/audit.log.jsonl"] and again.deleted == ["raw/notes/part-0.parquet"]
    assert not (b.root / "raw/notes/part-0.parquet").exists()


def test_pull_discards_what_was_not_pushed_but_keeps_staging(monkeypatch, tmp_path, s3, bucket):
    _worker(monkeypatch, tmp_path, "worker")
    copy = storage.working_copy(f"s3://{bucket}/corpus")
    _write(copy.root, {"curated/notes/part-0.parquet": b"published"})
    copy.push()
    (copy.root / "curated/notes/part-0.parquet").write_bytes(b"a failed stage's partial rewrite")
    _write(copy.root, {"curated/notes/part-9.parquet": b"left by a failed stage", ".shards-staging/s": b"resumable"})

    pulled = copy.pull()
    assert pulled.downloaded == ["curated/notes/part-0.parquet"] and pulled.deleted == ["curated/notes/part-9.parquet"]
    assert (copy.root / "curated/notes/part-0.parquet").read_bytes() == b"published"
    assert (copy.root / ".shards-staging/s").read_bytes() == b"resumable"
    assert (copy.root / "curated/notes/part-0.parquet").stat().st_mode & 0o222 == 0  # published zones sealed
    assert copy.directory.stat().st_mode & 0o077 == 0  # the working copy holds PHI: owner-only


def test_a_working_copy_is_held_by_one_task_at_a_time(monkeypatch, tmp_path, bucket):
    _worker(monkeypatch, tmp_path, "worker")
    copy = storage.working_copy(f"s3://{bucket}/corpus")
    with storage.exclusive(copy.root):
        storage.pull(copy.root)  # re-entrant: the holder itself may pull and push
        storage.push(copy.root)
        with (copy.directory / storage.LOCK_FILE).open("a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another task's pull would wait for
    with (copy.directory / storage.LOCK_FILE).open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_run_holds_an_object_store_root_against_every_worker(monkeypatch, tmp_path, s3, bucket):
    uri = f"s3://{bucket}/corpus"
    _worker(monkeypatch, tmp_path, "worker-a")
    root_a = storage.working_copy(uri).root
    _worker(monkeypatch, tmp_path, "worker-b")
    root_b = storage.working_copy(uri).root
    with run_lock(root_a, "run-a"):
        assert "run-a" in s3.get_object(Bucket=bucket, Key="corpus/.run.lock")["Body"].read().decode()
        with pytest.raises(RootBusy, match=f"{uri} is in use by run run-a .*delete {uri}/.run.lock"):
            with run_lock(root_b, "run-b"):
                pass  # pragma: no cover
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="corpus/.run.lock")
    with run_lock(root_b, "run-b"):
        pass

    # A lock left by a dead process of this host is taken over; one from another host is not.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = {"run_id": "run-dead", "host": socket.gethostname(), "pid": int(dead.stdout)}
    s3.put_object(Bucket=bucket, Key="corpus/.run.lock", Body=json.dumps(stale).encode())
    with run_lock(root_b, "run-b2"):
        assert "run-b2" in s3.get_object(Bucket=bucket, Key="corpus/.run.lock")["Body"].read().decode()
    elsewhere = {"run_id": "run-far", "host": "another-host", "pid": 1}
    s3.put_object(Bucket=bucket, Key="corpus/.run.lock", Body=json.dumps(elsewhere).encode())
    with pytest.raises(RootBusy, match="in use by run run-far"), run_lock(root_a, "run-a2"):
        pass  # pragma: no cover


def test_a_local_data_root_is_not_a_working_copy(tmp_path):
    (tmp_path / "data").mkdir()
    assert storage.working_copy_of(tmp_path / "data") is None
    assert storage.checkout(str(tmp_path / "data")) == tmp_path / "data"
    storage.push(tmp_path / "data")  # no-op, no store to talk to


def test_a_failed_stage_publishes_only_its_failure_record(monkeypatch, tmp_path, s3, bucket):
    uri = f"s3://{bucket}/corpus"
    _worker(monkeypatch, tmp_path, "worker")
    spec = generate_sample(tmp_path / "sample")
    ctx = open_run(spec, data_root=uri, demo=True)
    assert set(_keys(s3, bucket, "corpus")) == {"raw/.demo-pseudonym-key"}  # shared by every worker of the run
    _write(ctx.zones.root, {"deid/notes/part-0.parquet": b"not published by any stage"})

    with pytest.raises(Exception):  # noqa: B017 - no shards to validate; which error is the stage's business
        run_stage(ctx, "validate_shards")

    remote = _keys(s3, bucket, "corpus")
    assert set(remote) == {"raw/.demo-pseudonym-key", "governance/audit.log.jsonl", f"governance/logs/{ctx.run_id}.log"}
    events = [json.loads(line) for line in remote["governance/audit.log.jsonl"].decode().splitlines()]
    assert [e["type"] for e in events][-2:] == [audit.STAGE_START, audit.STAGE_FAILED]
    storage.pull(ctx.zones.root)
    assert not (ctx.zones.deid / "notes/part-0.parquet").exists()


@pytest.mark.slow
def test_whole_pipeline_on_an_s3_data_root(monkeypatch, tmp_path, s3, bucket, ray_local, capsys):
    uri = f"s3://{bucket}/corpus"
    _worker(monkeypatch, tmp_path, "worker-a")
    spec = generate_sample(tmp_path / "sample")
    ctx = open_run(spec, data_root=uri, demo=True)
    reports = run_pipeline(ctx, progress=lambda _: None)
    assert [r.stage for r in reports] == list(STAGE_NAMES)

    remote = _keys(s3, bucket, "corpus")
    manifest = json.loads(remote["shards/manifest.json"])
    assert manifest["run_id"] == ctx.run_id
    shard_files = [k for k in remote if k.startswith("shards/") and k.endswith(".arrow")]
    assert shard_files and "shards/tokenizer/tokenizer.json" in remote
    assert {f"governance/stages/{name}.json" for name in STAGE_NAMES} <= set(remote)
    assert {"governance/report.json", "governance/report.html"} <= set(remote)
    assert any(k.startswith("raw/") and k.endswith(".parquet") for k in remote)
    assert any(k.startswith("quarantine/") for k in remote)  # PHI zones keep prefixes a bucket policy can restrict
    events = [json.loads(line) for line in remote["governance/audit.log.jsonl"].decode().splitlines()]
    assert events[-1]["type"] == audit.RUN_END and events[-1]["details"]["status"] == "succeeded"
    # Every local file of the zones reached the store, byte for byte.
    for rel, data in remote.items():
        assert (ctx.zones.root / rel).read_bytes() == data, rel

    # Another worker, empty scratch: the same run's next task sees the published state and the same demo key.
    _worker(monkeypatch, tmp_path, "worker-b")
    other = open_run(spec, data_root=uri, run_id=ctx.run_id, demo=True)
    assert other.zones.root != ctx.zones.root and other.secret_key == ctx.secret_key
    assert run_stage(other, "validate_shards").details
    assert len(_keys(s3, bucket, "corpus")["governance/audit.log.jsonl"].splitlines()) == len(events) + 2

    # An auditor's machine: lineage and audit verify pull governance/ only, never the PHI zones.
    auditor = _worker(monkeypatch, tmp_path, "auditor")
    doc_id = _a_shard_doc_id(other)
    capsys.readouterr()
    assert main(["lineage", doc_id, "--data-root", uri]) == 0
    assert doc_id in capsys.readouterr().out
    assert main(["audit", "verify", "--data-root", uri]) == 0
    assert f"{len(events) + 2} events" in capsys.readouterr().out
    pulled = {p.relative_to(auditor).parts[2] for p in auditor.rglob("*") if p.is_file() and "data" in p.parts}
    assert pulled == {"governance"}

    # Erasure from yet another machine: pull, erase, push; the store no longer holds the patient's records.
    _worker(monkeypatch, tmp_path, "eraser")
    eraser = open_for_erasure(spec, uri, demo=True)
    key = next(k for k in read_zone(eraser.zones.raw).column("patient_key").to_pylist() if k)
    result = erase(eraser, patient_key=key)
    assert result.verified and result.documents_removed
    remote = _keys(s3, bucket, "corpus")
    raw_keys = {
        k
        for rel, data in remote.items()
        if rel.startswith("raw/") and rel.endswith(".parquet")
        for k in pq.read_table(pa.BufferReader(data), columns=["patient_key"]).column("patient_key").to_pylist()
    }
    assert raw_keys and key not in raw_keys
    events = [json.loads(line) for line in remote["governance/audit.log.jsonl"].decode().splitlines()]
    assert [e["seq"] for e in events if e["type"] == audit.ERASURE] == [result.audit_seq]


def _a_shard_doc_id(ctx) -> str:
    import datasets

    splits = [datasets.load_from_disk(str(p.parent)) for p in sorted(ctx.zones.shards.glob("*/dataset_info.json"))]
    return next(split["doc_id"][0] for split in splits if split.num_rows)

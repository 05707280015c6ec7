"""Shared fixtures: one local Ray for the whole session, and one full demo run that many tests inspect."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def ray_local():
    """The session's Ray instance; ``medcurate.core.ray_runtime.ray_session`` reuses it instead of starting its own.
    Every test has it: the stages that spread work over Ray actors (deid, curate, shard) would otherwise start
    and stop a Ray instance of their own on each call."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@dataclass
class SampleRun:
    ctx: object
    reports: list
    sample_dir: Path
    progress: list[str]

    @property
    def zones(self):
        return self.ctx.zones


SAMPLE_KEY = "sample-run-key-0123456789abcdef0123"


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, ray_local) -> SampleRun:
    """The bundled sample corpus, generated and run through every stage once per test session."""
    from medcurate.core.zones import make_private_dir
    from medcurate.runner import DEMO_KEY_FILE, open_run, run_pipeline
    from medcurate.sample import generate_sample

    base = tmp_path_factory.mktemp("sample-run")
    spec = generate_sample(base / "sample")
    # The demo key fixed in advance, so that every CI run sees the same surrogates: with a random key a shifted
    # date now and then reads like another planted one, and a leak test would fail on a coincidence.
    key_file = base / "data" / DEMO_KEY_FILE
    make_private_dir(key_file.parent)
    key_file.write_text(SAMPLE_KEY)
    key_file.chmod(0o600)  # owner-only, as the demo writes its own
    ctx = open_run(spec, data_root=base / "data", demo=True)
    progress: list[str] = []
    reports = run_pipeline(ctx, progress=progress.append)
    return SampleRun(ctx=ctx, reports=reports, sample_dir=base / "sample", progress=progress)


POSTGRES_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
POSTGRES_CLUSTERS = Path("/etc/postgresql")


def _postgres_accepting() -> bool:
    import psycopg2

    try:
        psycopg2.connect(POSTGRES_DSN).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The machine's PostgreSQL (trust auth, user postgres), started once if it is not running; a libpq DSN.

    CI images ship the server installed but stopped; starting it here (a no-op when it runs) means ``make test``
    and a bare ``pytest`` behave alike.
    """
    import subprocess
    import time

    if _postgres_accepting():
        return POSTGRES_DSN
    versions = sorted((p.name for p in POSTGRES_CLUSTERS.glob("*") if p.name.isdigit()), key=int)
    if not versions:
        pytest.fail(f"PostgreSQL is not running and no cluster is installed under {POSTGRES_CLUSTERS}")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=True)
    deadline = time.monotonic() + 60
    while not _postgres_accepting():
        if time.monotonic() > deadline:
            pytest.fail(f"PostgreSQL {versions[-1]} did not accept connections within 60 s of starting")
        time.sleep(0.5)
    return POSTGRES_DSN

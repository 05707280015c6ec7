"""A real Airflow 3 deployment on PostgreSQL curates the sample, with the mapped ingest tasks running in parallel.

``airflow dags test`` (tests/test_dags.py) runs every task in one process on SQLite, one after the other.  Here
each component is its own process, as in production: ``airflow api-server`` (whose Execution API the task
runners talk to, authenticated by JWTs signed with a shared secret), ``airflow dag-processor`` (parses dags/
into the metadata database) and ``airflow scheduler`` (LocalExecutor: every task is a fresh process), on a
throwaway PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
import psycopg2
import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from medcurate.core.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAG_ID = "curate_medical_corpus"
MAPPED_INGEST = "ingest_source"
RAY_POOL = "medcurate_ray"
RAY_TASKS = ("deid", "shard")  # the tasks the DAG puts in RAY_POOL
PARALLELISM = 8
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 15 * 60
LOG_TAIL = 3000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-LOG_TAIL:] if path.exists() else f"({path} missing)"


@pytest.fixture
def airflow_database(postgres_server: str) -> Iterator[tuple[str, str]]:
    """A fresh database per test, dropped afterwards: (SQLAlchemy URL for Airflow, libpq DSN for the test)."""
    name = f"medcurate_airflow_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres_server)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        server = parse_dsn(postgres_server)
        yield (
            f"postgresql+psycopg2://{server['user']}@{server['host']}:{server['port']}/{name}",
            make_dsn(postgres_server, dbname=name),
        )
    finally:
        with admin.cursor() as cur:
            # FORCE: a component that outlived the finalizer must not keep the database alive.
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@dataclass
class TaskRun:
    task_id: str
    map_index: int
    state: str | None
    pool: str
    start: datetime | None
    end: datetime | None

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds() if self.start and self.end else float("nan")


@dataclass
class Deployment:
    """The Airflow components of one test, each in its own process group so that the finalizer kills it whole."""

    home: Path
    env: dict[str, str]
    dsn: str
    api_port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def cli(self, *args: str) -> str:
        result = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, cwd=self.home)
        output = result.stdout[-LOG_TAIL:] + result.stderr[-LOG_TAIL:]
        assert result.returncode == 0, f"airflow {' '.join(args)} exited {result.returncode}:\n{output}"
        return result.stdout

    def setup(self) -> None:
        medcurate = str(Path(AIRFLOW).parent / "medcurate")
        result = subprocess.run([medcurate, "airflow-setup"], env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-LOG_TAIL:] + result.stderr[-LOG_TAIL:]

    def start(self, name: str, *args: str) -> None:
        with (self.home / f"{name}.log").open("wb") as out:
            self.processes[name] = subprocess.Popen(
                [AIRFLOW, name, *args],
                env=self.env,
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                pytest.fail(f"airflow {name} exited with {proc.returncode}:\n{_tail(self.home / f'{name}.log')}")

    def query(self, sql: str, *params: object) -> list[tuple]:
        con = psycopg2.connect(self.dsn)
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            con.close()

    def wait_for(self, what: str, ready: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.component_logs()}")
            time.sleep(2)

    def component_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{_tail(self.home / f'{name}.log')}" for name in self.processes)

    def task_log_paths(self, run_id: str, task: TaskRun) -> list[Path]:
        return sorted(self.home.glob(f"logs/dag_id={DAG_ID}/run_id={run_id}/task_id={task.task_id}/**/*.log"))

    def task_log_tails(self, run_id: str, task: TaskRun) -> str:
        attempts = self.task_log_paths(run_id, task)
        return "\n".join(f"--- {task.task_id}[{task.map_index}] {path.name} ---\n{_tail(path)}" for path in attempts)

    def stop(self) -> None:
        """Terminate every process the components started (task runners, their Ray), then kill what is left."""
        procs: list[psutil.Process] = []
        for proc in self.processes.values():
            try:
                root = psutil.Process(proc.pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for proc in self.processes.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        for proc in self.processes.values():
            proc.wait(timeout=30)


@pytest.fixture
def airflow_deployment(tmp_path: Path, airflow_database: tuple[str, str]) -> Iterator[Deployment]:
    sql_alchemy_conn, dsn = airflow_database
    home = tmp_path / "airflow"
    home.mkdir()
    api_port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(PARALLELISM),
            # Task runners report to the api-server's Execution API; the scheduler signs their tokens with the
            # same secret the api-server checks (a fresh one per test, never written to the repo).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "GX_ANALYTICS_ENABLED": "False",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    env.pop("MEDCURATE_PSEUDONYM_KEY", None)  # the sample run works with its own throwaway key
    env.pop("RAY_ADDRESS", None)  # each Ray-using task starts its own local Ray
    deployment = Deployment(home=home, env=env, dsn=dsn, api_port=api_port)
    try:
        deployment.cli("db", "migrate")
        deployment.setup()  # medcurate airflow-setup: the pool the DAGs' deid and shard tasks use
        deployment.start("api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1")
        deployment.start("dag-processor")
        deployment.start("scheduler")
        yield deployment
    finally:
        deployment.stop()


def _api_healthy(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _max_concurrency(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at the same instant)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_scheduler_on_postgres_runs_the_mapped_ingest_in_parallel(airflow_deployment: Deployment, tmp_path: Path):
    deployment = airflow_deployment
    data_root = tmp_path / "data"
    run_id = "medcurate_postgres_test"
    started = time.monotonic()

    deployment.wait_for("the api-server", lambda: _api_healthy(deployment.api_port), STARTUP_TIMEOUT)
    deployment.wait_for(
        f"the dag-processor to serialize {DAG_ID}",
        lambda: deployment.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", DAG_ID),
        STARTUP_TIMEOUT,
    )
    deployment.cli("dags", "unpause", DAG_ID)
    conf = json.dumps({"spec": "sample", "data_root": str(data_root)})
    deployment.cli("dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", conf)

    def run_state() -> str | None:
        return deployment.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)[0][0]

    deployment.wait_for(f"run {run_id}", lambda: run_state() in ("success", "failed"), RUN_TIMEOUT)
    tasks = [
        TaskRun(*row)
        for row in deployment.query(
            "SELECT task_id, map_index, state, pool, start_date, end_date FROM task_instance "
            "WHERE dag_id = %s AND run_id = %s ORDER BY start_date, task_id, map_index",
            DAG_ID,
            run_id,
        )
    ]
    print(f"\nrun {run_id}: {run_state()} after {time.monotonic() - started:.0f} s (scheduler on PostgreSQL)")
    for t in tasks:
        print(f"  {t.task_id:<16} {t.map_index:>3} {t.state or '-':<8} {t.pool:<14} {t.seconds:6.1f} s")
    if run_state() != "success":
        failed = [t for t in tasks if t.state != "success"]
        logs = "\n".join(deployment.task_log_tails(run_id, t) for t in failed)
        pytest.fail(f"run {run_id} ended {run_state()}: {[(t.task_id, t.map_index, t.state) for t in failed]}\n{logs}")

    assert (data_root / "governance" / "report.html").is_file()
    manifest = json.loads((data_root / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["tokens"] > 0
    assert {t.task_id: t.pool for t in tasks if t.task_id in RAY_TASKS} == dict.fromkeys(RAY_TASKS, RAY_POOL)

    sources = load_spec(data_root / "sample-corpus" / "sample.yaml").sources
    ingest = [t for t in tasks if t.task_id == MAPPED_INGEST]
    assert sorted(t.map_index for t in ingest) == list(range(len(sources))), "one mapped ingest task per source"
    peak = _max_concurrency([(t.start, t.end) for t in ingest])
    print(f"  {MAPPED_INGEST}: {len(ingest)} mapped tasks, at most {peak} running at once")
    assert peak >= 2, "the mapped ingest tasks ran one after the other"
    labels = deployment.query(
        "SELECT rendered_map_index FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s",
        DAG_ID,
        run_id,
        MAPPED_INGEST,
    )
    assert sorted(row[0] for row in labels) == sorted(s.name for s in sources), "mapped tasks show their source"

    # What Ray writes to stderr lands in the task log at ERROR level: a successful run must have none of its noise.
    noise = []
    for t in tasks:
        for path in deployment.task_log_paths(run_id, t):
            for line in path.read_text(errors="replace").splitlines():
                if '"level":"error"' in line.replace(" ", "") and ("core_worker.cc" in line or "Token auth" in line):
                    noise.append(f"{t.task_id}: {line[:300]}")
    assert noise == []

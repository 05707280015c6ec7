"""A stage run with ``RAY_ADDRESS`` set does its Ray work on that cluster, as on a worker next to a Ray cluster.

The head is a real ``ray start --head`` with its own temp dir and ports, so it shares nothing with the test
session's in-process Ray (``ray_local``), and is stopped through its own process group, never ``ray stop``
(which stops every Ray on the machine).  Token authentication is on, with a fresh token per test: Ray 2.60
enables it by itself whenever ~/.ray/auth_token exists, so a cluster client must be given the token either way.

The two-node test adds a second raylet (``ray start --address=HEAD``, its own ports, temp dir and one CPU) and
reads back from the cluster's own records (GCS job, actor and task tables) on which node each
de-identification, cleaning (curate) and tokenization call ran.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from zone_digests import zone_digests

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 120
STOP_TIMEOUT = 60
# Every port a head node opens; fixed defaults (GCS 6379, client 10001, agent 52365, ...) could collide with
# the session's Ray, another test run or Redis.
PORT_OPTIONS = (
    "--port",
    "--node-manager-port",
    "--object-manager-port",
    "--ray-client-server-port",
    "--dashboard-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def _free_ports(count: int) -> list[int]:
    """Distinct ports free right now (all sockets held open until every port is chosen)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@dataclass
class RayNode:
    address: str
    env: dict[str, str]
    temp_dir: Path
    process: subprocess.Popen

    def session_logs(self) -> Path:
        return self.temp_dir / "session_latest" / "logs"

    def stop(self) -> None:
        """SIGTERM to ``ray start --block`` alone lets it drain the node and stop its services; then kill the rest.

        Workers run in process groups of their own, so the leftovers are found as descendants, taken beforehand.
        Stopping twice is harmless.  The same for a head and for a node that joined one.
        """
        if self.process.poll() is not None:
            return
        leftovers = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for p in leftovers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=STOP_TIMEOUT)


# A node that joins a head opens these (the head's GCS, client and dashboard ports are the head's alone).
WORKER_PORT_OPTIONS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
)


def _start_node(
    command: list[str], options: tuple[str, ...], env: dict[str, str], log_path: Path, prefix: str
) -> tuple[subprocess.Popen, Path, list[int]]:
    """``ray start --block`` with its own temp dir and free ports, in a process group of its own."""
    # Ray's unix sockets live under the temp dir, and a socket path may not exceed 107 bytes: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    ports = _free_ports(len(options))
    command = [*command, "--block", "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp_dir)]
    command += ["--disable-usage-stats"]
    for option, port in zip(options, ports, strict=True):
        command += [option, str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, temp_dir, ports


def _wait_until(ready, proc: subprocess.Popen, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(1)


@contextmanager
def _head(tmp_path: Path, num_cpus: int) -> Iterator[RayNode]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"})
    command = [str(BIN / "ray"), "start", "--head", "--num-cpus", str(num_cpus), "--include-dashboard", "false"]
    log_path = tmp_path / "ray-head.log"
    proc, temp_dir, ports = _start_node(command, PORT_OPTIONS, env, log_path, "rayhead-")
    head = RayNode(address=f"127.0.0.1:{ports[0]}", env=env, temp_dir=temp_dir, process=proc)
    try:
        # `ray start` writes the cluster's address file once the head is up.
        _wait_until((temp_dir / "ray_current_cluster").exists, proc, log_path, "the Ray head")
        yield head
    finally:
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[RayNode]:
    with _head(tmp_path, num_cpus=2) as head:
        yield head


@pytest.fixture
def ray_two_nodes(tmp_path: Path) -> Iterator[tuple[RayNode, RayNode]]:
    """A head and a second node on this machine, one CPU each: separate raylets, as on two machines."""
    with _head(tmp_path, num_cpus=1) as head:
        command = [str(BIN / "ray"), "start", "--address", head.address, "--num-cpus", "1"]
        log_path = tmp_path / "ray-worker.log"
        proc, temp_dir, _ = _start_node(command, WORKER_PORT_OPTIONS, head.env, log_path, "raynode-")
        node = RayNode(address=head.address, env=head.env, temp_dir=temp_dir, process=proc)
        try:
            started = log_path.read_bytes
            _wait_until(lambda: b"Ray runtime started" in started(), proc, log_path, "the second node")
            yield head, node
        finally:
            node.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_shard_stage_runs_on_the_cluster_named_by_ray_address(sample_run, ray_head: RayNode, tmp_path: Path):
    import ray

    data_root = tmp_path / "data"
    shutil.copytree(sample_run.zones.root, data_root, symlinks=True)
    shutil.rmtree(data_root / "shards")
    run_log = data_root / "governance" / "logs" / f"{sample_run.ctx.run_id}.log"
    logged_before = run_log.stat().st_size
    spec = sample_run.sample_dir / "sample.yaml"
    command = [str(BIN / "medcurate"), "stage", "shard", str(spec), "--run-id", sample_run.ctx.run_id]
    command += ["--data-root", str(data_root), "--demo"]

    started = time.monotonic()
    stage = subprocess.Popen(
        command,
        env={**ray_head.env, "RAY_ADDRESS": ray_head.address},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    output, _ = stage.communicate()
    print(f"\nshard stage on the Ray head: {time.monotonic() - started:.1f} s")
    assert stage.returncode == 0, output[-3000:]

    manifest = json.loads((data_root / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["tokens"] > 0
    assert (
        manifest["merkle"]["root"]
        == json.loads(sample_run.zones.shards.joinpath("manifest.json").read_text())["merkle"]["root"]
    ), "the cluster build must give the same shards as the in-process build"
    assert f"ray started (cluster {ray_head.address})" in run_log.read_text()[logged_before:]
    # The stage joined the head as a driver (the head names the driver's core log after its pid); a driver's
    # tasks and actors run only on the cluster it joined.
    logs = ray_head.session_logs()
    assert list(logs.glob(f"python-core-driver-*_{stage.pid}.log")), sorted(p.name for p in logs.iterdir())

    # Stopping the head stops every process of its own and leaves the session's Ray (ray_local) running.
    ray_head.stop()
    survivors = [p.pid for p in psutil.process_iter(["cmdline"]) if str(ray_head.temp_dir) in str(p.info["cmdline"])]
    assert survivors == []
    assert ray.get(ray.remote(lambda: "alive").remote(), timeout=120) == "alive"


# Run by a separate Python (the test process already holds the session's Ray): joins the cluster as a driver
# of its own and prints, per job of the cluster, its driver's pid, and per actor call its actor class, method
# and node, from the GCS task events that Ray records for every task.
CLUSTER_RECORDS = """
import json, ray
from ray._private.state import state
ray.init(address="auto", log_to_driver=False, configure_logging=False)
jobs = {j["JobID"]: j["DriverPid"] for j in state.job_table()}
calls = {}
for event in state._get_all_task_events():
    call = calls.setdefault(event.task_id.hex(), {"job": event.job_id.hex(), "name": "", "node": ""})
    if event.HasField("task_info") and event.task_info.func_or_class_name:
        call["name"] = event.task_info.func_or_class_name
    if event.HasField("state_updates") and event.state_updates.node_id:
        call["node"] = event.state_updates.node_id.hex()
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
print(json.dumps({"jobs": jobs, "calls": list(calls.values()), "nodes": nodes}))
"""


@pytest.mark.slow
def test_deid_curation_and_tokenization_run_on_both_nodes_of_a_cluster(sample_run, ray_two_nodes, tmp_path: Path):
    head, _ = ray_two_nodes
    data_root = tmp_path / "data"
    shutil.copytree(sample_run.zones.root, data_root, symlinks=True)
    for zone in ("deid", "curated", "shards"):
        shutil.rmtree(data_root / zone)
    # Small batches and two workers (one per node), so that the sample's few hundred documents make several
    # calls for each actor.
    sample = tmp_path / "sample"
    shutil.copytree(sample_run.sample_dir, sample, symlinks=True)
    spec = sample / "sample.yaml"
    spec.write_text(spec.read_text() + "parallel: {batch_docs: 16, workers: 2}\n")
    env = {**head.env, "RAY_ADDRESS": head.address}
    drivers = {}
    for stage in ("deid", "curate", "shard"):
        command = [str(BIN / "medcurate"), "stage", stage, str(spec), "--run-id", sample_run.ctx.run_id]
        command += ["--data-root", str(data_root), "--demo"]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = proc.communicate()
        assert proc.returncode == 0, output[-3000:]
        drivers[stage] = proc.pid

    # The same bytes as the in-process run of the session's sample.
    for zone in ("deid", "curated", "shards"):
        assert zone_digests(data_root, zone) == zone_digests(sample_run.zones.root, zone), f"{zone} differs"

    records = subprocess.run(
        [sys.executable, "-c", CLUSTER_RECORDS], env=env, capture_output=True, text=True, timeout=STARTUP_TIMEOUT
    )
    assert records.returncode == 0, records.stderr[-3000:]
    cluster = json.loads(records.stdout.strip().splitlines()[-1])
    assert len(cluster["nodes"]) == 2
    job_of = {pid: job for job, pid in cluster["jobs"].items()}
    methods = {"deid": "_Analyzer.analyze", "curate": "CleanDocuments.clean", "shard": "TokenizeDocuments.tokenize"}
    for stage, method in methods.items():
        job = job_of[drivers[stage]]
        ran_on = {c["node"] for c in cluster["calls"] if c["job"] == job and c["name"] == method and c["node"]}
        print(f"\n{stage}: {method} calls on nodes {sorted(n[:8] for n in ran_on)}")
        assert ran_on == set(cluster["nodes"]), f"{stage}'s {method} calls ran on {ran_on}, not on both nodes"

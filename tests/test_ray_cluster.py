"""A stage run with ``RAY_ADDRESS`` set does its Ray work on that cluster, as on a worker next to a Ray cluster.

The head is a real ``ray start --head`` with its own temp dir and ports, so it shares nothing with the test
session's in-process Ray (``ray_local``), and is stopped through its own process group, never ``ray stop``
(which stops every Ray on the machine).  Token authentication is on, with a fresh token per test: Ray 2.60
enables it by itself whenever ~/.ray/auth_token exists, so a cluster client must be given the token either way.
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
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

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
class RayHead:
    address: str
    env: dict[str, str]
    temp_dir: Path
    process: subprocess.Popen

    def session_logs(self) -> Path:
        return self.temp_dir / "session_latest" / "logs"

    def stop(self) -> None:
        """SIGTERM to ``ray start --block`` alone lets it drain the node and stop its services; then kill the rest.

        Workers run in process groups of their own, so the leftovers are found as descendants, taken beforehand.
        Stopping twice is harmless.
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


@pytest.fixture
def ray_head(tmp_path: Path) -> Iterator[RayHead]:
    # Ray's unix sockets live under the temp dir, and a socket path may not exceed 107 bytes: keep it short.
    temp_dir = Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))
    ports = _free_ports(len(PORT_OPTIONS))
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"})
    command = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "2"]
    command += ["--temp-dir", str(temp_dir), "--include-dashboard", "false", "--disable-usage-stats"]
    for option, port in zip(PORT_OPTIONS, ports, strict=True):
        command += [option, str(port)]
    log_path = tmp_path / "ray-head.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(address=f"127.0.0.1:{ports[0]}", env=env, temp_dir=temp_dir, process=proc)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # `ray start` writes the cluster's address file once the head is up.
        while not (temp_dir / "ray_current_cluster").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Ray head did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(1)
        yield head
    finally:
        head.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_shard_stage_runs_on_the_cluster_named_by_ray_address(sample_run, ray_head: RayHead, tmp_path: Path):
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

"""Nothing alarming on a normal start.  Ray: its token-authentication notice (authentication stays on, the
default) and C++ ``core_worker.cc`` errors; transformers: its notice that PyTorch is missing.  They would otherwise
reach the CLI's output and every task log."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

CODE = """
    import logging
    logging.basicConfig(level=logging.INFO)
    import ray
    from medcurate.core.ray_runtime import ray_session

    @ray.remote
    class Echo:
        def echo(self, value):
            return value

    with ray_session(1):
        actor = Echo.remote()
        print(ray.get(actor.echo.remote("ok")))
        ray.kill(actor)
"""


def test_a_local_ray_session_prints_no_token_notice_and_no_core_worker_errors(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CODE)], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "ok"
    output = result.stdout + result.stderr
    assert "Token authentication is enabled" not in output
    assert "core_worker.cc" not in output


def test_loading_the_deid_engine_prints_no_pytorch_notice():
    """transformers (installed for the tokenizer files, without PyTorch) would announce at import, through
    Presidio, that PyTorch is missing: a line in every de-identification log that reads like a fault."""
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_NO_ADVISORY_WARNINGS"}
    done = subprocess.run(
        [sys.executable, "-c", "import pipelines.deid.engine"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "PyTorch" not in done.stdout + done.stderr

"""One way to get a Ray runtime: the cluster in ``RAY_ADDRESS``, or a local instance sized to the machine.

Stages that use Ray call ``ray_session()``.  When the caller (``medcurate run``) already opened a session the
stages share it, so a full run starts Ray once; a stage run alone (an Airflow task) opens and closes its own.

A local instance starts only what the stages use: no dashboard, no worker processes started ahead of time
(Ray would otherwise start one idle worker per CPU, ~170 MB each, that the stages' actors never run in),
and an object store no bigger than the few batches the stages keep in flight need.  Ray 2.x starts three
Python services on a local head whatever ``include_dashboard`` says: the API server (dashboard head, ~125 MB,
for the job/state REST API), the autoscaler monitor (~90 MB) and the log monitor (~87 MB, which copies worker
logs to the driver, off here anyway with ``log_to_driver=False``).  The stages use none of them (they talk to
the GCS and the raylet only), so a local instance stops them once started: ~300 MB of the demo's peak.  The
dashboard *agent* and runtime-env agent stay: the raylet shares their fate.  A cluster (``RAY_ADDRESS``) is
left as its operator started it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

# Services of a local head the stages never talk to (``ray._private.node.Node.kill_<name>``).
UNUSED_LOCAL_SERVICES = ("dashboard", "monitor", "log_monitor")

# The stages keep a bounded window of batches in the object store, a few per actor (one actor per CPU), each
# a few MB of text or token ids; past this size Ray spills to disk rather than failing.  Ray's default
# reserves 30% of the machine's memory.
OBJECT_STORE_BYTES_PER_CPU = 128 * 1024 * 1024


class _TokenAuthNotice(logging.Filter):
    """Drops Ray's notice that a new local instance has token authentication on (its default, which we keep).

    Ray prints it on every start, at WARNING, into the CLI's output and every task log, where it reads as a
    problem; the notice that authentication is *off* still gets through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_TokenAuthNotice())


@contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[None]:
    import ray

    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        cpus = num_cpus or os.cpu_count() or 1
        kwargs |= {
            "num_cpus": cpus,
            "object_store_memory": cpus * OBJECT_STORE_BYTES_PER_CPU,
            "_system_config": {"prestart_worker_first_driver": False},
        }
    # Ray ships our code to workers by importing it; the project is installed, so no working_dir upload.
    # Without RAY_ADDRESS, "local" starts a private instance instead of silently joining whatever cluster a
    # `ray start` on this machine recorded in /tmp/ray.
    ray.init(address=address or "local", **kwargs)
    if address is None:
        _stop_unused_services()
    log.info("ray started (%s)", "cluster " + address if address else f"local, {kwargs['num_cpus']} cpus")
    try:
        yield
    finally:
        ray.shutdown()


def _stop_unused_services() -> None:
    """Stop the local head's services no stage uses (see the module docstring); best effort.

    Uses Ray's private node handle: should a Ray upgrade move it, the services just keep running (more memory,
    same results).
    """
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    for name in UNUSED_LOCAL_SERVICES:
        kill = getattr(node, f"kill_{name}", None)
        if kill is None:
            log.debug("ray: cannot stop the %s service of this Ray version", name)
            continue
        try:
            kill(check_alive=False)
        except Exception as exc:  # noqa: BLE001 - a service we could not stop costs memory, not correctness
            log.debug("ray: could not stop the %s service: %s", name, exc)

"""One way to get a Ray runtime: the cluster in ``RAY_ADDRESS``, or a local instance sized to the machine.

Stages that use Ray call ``ray_session()``.  When the caller (``medcurate run``) already opened a session the
stages share it, so a full run starts Ray once; a stage run alone (an Airflow task) opens and closes its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def ray_session(num_cpus: int | None = None) -> Iterator[None]:
    import ray

    # Ray Data narrates every execution at INFO on the console; the stages report their own counts.  Its
    # logging is configured when ray.data is first imported, from this file (an operator's own file wins).
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(Path(__file__).with_name("ray_data_logging.yaml")))
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    # Ray ships our code to workers by importing it; the project is installed, so no working_dir upload.
    # Without RAY_ADDRESS, "local" starts a private instance instead of silently joining whatever cluster a
    # `ray start` on this machine recorded in /tmp/ray.
    ray.init(address=address or "local", **kwargs)
    log.info("ray started (%s)", "cluster " + address if address else f"local, {kwargs['num_cpus']} cpus")
    try:
        yield
    finally:
        ray.shutdown()

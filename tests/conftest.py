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


@pytest.fixture(scope="session")
def ray_local():
    """The session's Ray instance; ``medcurate.ray_runtime.ray_session`` reuses it instead of starting its own."""
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


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, ray_local) -> SampleRun:
    """The bundled sample corpus, generated and run through every stage once per test session."""
    from medcurate.runner import open_run, run_pipeline
    from medcurate.sample import generate_sample

    base = tmp_path_factory.mktemp("sample-run")
    spec = generate_sample(base / "sample")
    ctx = open_run(spec, data_root=base / "data", demo=True)
    progress: list[str] = []
    reports = run_pipeline(ctx, progress=progress.append)
    return SampleRun(ctx=ctx, reports=reports, sample_dir=base / "sample", progress=progress)

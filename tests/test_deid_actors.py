"""The de-identification stage stops its Ray actors when it ends (issue 14): a full run shares one Ray session
across stages, and each analyzer actor holds spaCy and Presidio (~430 MB), so actors still alive after deid
count in the memory of the stage after it."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import psutil
import pytest


@pytest.mark.slow
def test_no_analyzer_actor_outlives_the_deid_stage(sample_run, tmp_path: Path) -> None:
    from medcurate.core.zones import make_private_dir
    from medcurate.runner import DEMO_KEY_FILE, open_run, run_stage

    key_file = tmp_path / "data" / DEMO_KEY_FILE
    make_private_dir(key_file.parent)
    key_file.write_text((sample_run.zones.root / DEMO_KEY_FILE).read_text())
    key_file.chmod(0o600)
    spec = sample_run.sample_dir / "sample.yaml"
    ctx = open_run(spec, data_root=tmp_path / "data", run_id="actors", demo=True)
    # Without the collector, an actor handle that a reference cycle keeps stays alive; the stage must not rely
    # on the collector (or on Ray noticing a dropped handle) to free its actors.
    gc.disable()
    try:
        for stage in ("ingest", "validate_raw", "deid"):
            run_stage(ctx, stage)
        assert ctx.zones.deid.exists()
        # Killed, an actor's process is gone within milliseconds; released by its handle going out of scope, it
        # lingered 1.8 s on an idle machine and several seconds under load, inside the next stage.
        deadline = time.monotonic() + 1.0
        while _analyzer_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _analyzer_processes()
    finally:
        gc.enable()


def _analyzer_processes() -> list[psutil.Process]:
    """This test session's live Ray workers that host an analyzer actor (Ray names the process after it)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "_Analyzer" in process.name() and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found

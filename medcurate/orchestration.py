"""What an orchestrator's task calls: open a run from plain strings, run one stage, return a small summary.

Airflow tasks (and any other scheduler) pass only strings between tasks: the spec path, the data root and
the run id.  Everything else is re-read from the spec and the zones, so any task can run in any process, on
any worker, and a retried task redoes exactly its own stage.  The returned summaries hold counts, never text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from governance import audit
from medcurate.runner import open_run, run_stage

SAMPLE_SPEC = "sample"
DEMO_DIR = Path("medcurate-demo")


def prepare_run(spec: str, data_root: str | None, run_id: str) -> dict[str, Any]:
    """Resolve the spec ('sample' generates the bundled corpus) and create the zones; validates the spec."""
    demo = spec == SAMPLE_SPEC
    if demo:
        from medcurate.sample import generate_sample

        # Inputs beside the zones when a data root is given, else the same place as `medcurate run`'s demo.
        spec = str(generate_sample(Path(data_root) / "sample-corpus" if data_root else DEMO_DIR).resolve())
    ctx = open_run(spec, data_root=data_root, run_id=safe_run_id(run_id), demo=demo)
    audit.record_run_start(ctx)
    return {"spec": str(Path(spec).resolve()), "data_root": str(ctx.zones.root), "run_id": ctx.run_id, "demo": demo}


def run_stage_for(run: dict[str, Any], stage: str, secret_key: str | None = None) -> dict[str, Any]:
    """Run one stage of a prepared run; ``secret_key`` overrides the environment (an Airflow Variable)."""
    ctx = open_run(
        run["spec"], data_root=run["data_root"], run_id=run["run_id"], demo=run["demo"], secret_key=secret_key
    )
    report = run_stage(ctx, stage)
    return {
        "stage": stage,
        "run_id": ctx.run_id,
        "input": report.total_input,
        "output": report.total_output,
        "removed": dict(report.removed_by_reason),
    }


def finish_run(run: dict[str, Any]) -> dict[str, Any]:
    """Close the run in the audit log once every stage has succeeded (a failed stage logs its own failure)."""
    governance = Path(run["data_root"]) / "governance"
    stages = sorted(run.get("stages", {}))
    audit.append_event(governance, audit.RUN_END, run["run_id"], {"status": "succeeded", "stages": stages})
    return {"run_id": run["run_id"], "status": "succeeded"}


def safe_run_id(run_id: str) -> str:
    """Airflow run ids contain ':' and '+'; keep them readable but safe as file names."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")

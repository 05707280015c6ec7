"""What every medcurate DAG shares: params, default args, the failure audit, the assets and the common tasks.

It lives in the library rather than in ``dags/`` so that every DAG file, the DAG processor and the workers
import it the same way (a plain ``DagBag`` does not put ``dags/`` on ``sys.path``).  Parsing a DAG file runs
this module's top level, so it imports only ``airflow.sdk`` and the stage and kind names
(``medcurate.core.names``); the medcurate stages are imported inside the
tasks, where their cost is paid once per task instead of once per parse.

Where a run's spec and data root come from, first match wins:

1. the DAG run's params (``airflow dags trigger -c '{"spec": ..., "data_root": ...}'``), when not null;
2. the latest asset event that triggered the run: every DAG that updates a zone puts ``{spec, data_root,
   demo}`` in its event's ``extra``, so the next DAG works on the same corpus;
3. the Airflow Variables ``MEDCURATE_SPEC`` / ``MEDCURATE_DATA_ROOT`` (so any secrets backend), read when
   the run starts rather than when the file is parsed;
4. the worker's environment variables of the same names;
5. the bundled synthetic sample (spec ``sample``) and the spec's own data root.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, Param, task

from medcurate.core.names import SOURCE_KINDS

log = logging.getLogger("medcurate")

KEY_VARIABLE = "MEDCURATE_PSEUDONYM_KEY"
SPEC_SETTING = "MEDCURATE_SPEC"
DATA_ROOT_SETTING = "MEDCURATE_DATA_ROOT"
DEFAULT_SPEC = "sample"
# One slot by default: de-identification and sharding each start a Ray runtime that wants every core.
# The pool must exist (docs/operations.md, "Airflow"): the scheduler never starts a task of a missing pool.
RAY_POOL = os.environ.get("MEDCURATE_RAY_POOL", "medcurate_ray")

RAY_STAGES = ("deid", "shard")
# Logical assets: one DAG's update of a zone triggers the next DAG.  The zone's location travels in the
# event's extra, because one deployment may curate several corpora under different data roots.
RAW_ASSETS = {kind: Asset(name=f"medcurate_raw_{kind}", uri=f"x-medcurate://raw/{kind}") for kind in SOURCE_KINDS}
DEID_ASSET = Asset(name="medcurate_deid", uri="x-medcurate://deid")
CURATED_ASSET = Asset(name="medcurate_curated", uri="x-medcurate://curated")
SHARDS_ASSET = Asset(name="medcurate_shards", uri="x-medcurate://shards")

# A path or URI: printable, no control characters.
LOCATION_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def location_param(description: str, required: bool = False) -> Param:
    """A spec path or data root (path or URI) param; ``required``: no null default."""
    schema = {"minLength": 1, "maxLength": 4096, "pattern": LOCATION_PATTERN, "description": description}
    if required:
        return Param(type="string", **schema)
    return Param(None, type=["null", "string"], **schema)


def run_params() -> dict[str, Param]:
    """The params of every run DAG, checked against their JSON schema before the run starts."""
    return {
        "spec": location_param(
            f"corpus spec path, or 'sample'; null: the triggering asset event, else ${SPEC_SETTING}"
        ),
        "data_root": location_param(
            f"data root (path or s3:// URI); null: the asset event, ${DATA_ROOT_SETTING}, the spec's"
        ),
    }


def secret_key() -> str | None:
    """The pseudonymization key from the Airflow Variable (the secrets backend); None: the worker's env."""
    from airflow.sdk import Variable

    return Variable.get(KEY_VARIABLE, default=None)


def _setting(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None) or os.environ.get(name) or None


def run_settings(params: dict[str, Any], triggering_asset_events: Any = None) -> dict[str, Any]:
    """The run's ``{spec, data_root, demo}`` by the precedence in this module's docstring."""
    events = [event for events in (triggering_asset_events or {}).values() for event in events]
    latest = max(events, key=lambda event: event.timestamp).extra if events else {}
    if params.get("spec"):
        spec, demo = params["spec"], False
    elif latest.get("spec"):
        spec, demo = latest["spec"], bool(latest.get("demo"))
    else:
        spec, demo = _setting(SPEC_SETTING) or DEFAULT_SPEC, False
    data_root = params.get("data_root") or latest.get("data_root") or _setting(DATA_ROOT_SETTING)
    return {"spec": spec, "data_root": data_root, "demo": demo}


def medcurate_run_id(dag_id: str, airflow_run_id: str) -> str:
    """Each DAG run is its own medcurate run; the DAG id keeps two DAGs' runs started together apart."""
    from medcurate.orchestration import safe_run_id

    return safe_run_id(f"{dag_id}__{airflow_run_id}")


def _audit_task_failure(context: dict[str, Any], final: bool) -> None:
    """Append a ``task_failed`` event: ids, try number and the exception's class, never its message."""
    from medcurate.orchestration import data_root_of, record_task_failure

    ti = context["ti"]
    error = context.get("exception")
    details = {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "map_index": ti.map_index,
        "try_number": ti.try_number,
        "error": type(error).__name__ if error is not None else None,
        "final": final,
    }
    try:
        run = ti.xcom_pull(task_ids="prepare")
        if run:
            data_root, run_id = run["data_root"], run["run_id"]
        else:  # prepare itself failed: the run never got its data root, so derive it the same way
            settings = run_settings(context["params"], context.get("triggering_asset_events"))
            data_root = data_root_of(settings["spec"], settings["data_root"])
            run_id = medcurate_run_id(ti.dag_id, context["run_id"])
        record_task_failure(data_root, run_id, details)
    except Exception as exc:  # the task's own error is what the operator must see; this one is only logged
        log.error("could not audit the failure of %s.%s: %s", ti.dag_id, ti.task_id, type(exc).__name__)


def audit_task_failure(context: dict[str, Any]) -> None:
    _audit_task_failure(context, final=True)


def audit_task_retry(context: dict[str, Any]) -> None:
    _audit_task_failure(context, final=False)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "medcurate",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,  # 30 s, then 60 s
    "max_retry_delay": timedelta(minutes=10),
    "on_failure_callback": audit_task_failure,
    "on_retry_callback": audit_task_retry,
}
DAG_DEFAULTS: dict[str, Any] = {
    "catchup": False,
    # Runs of one DAG rewrite the same zones: never two at once.
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "params": run_params(),
}


@task
def prepare(
    params: dict | None = None,
    dag: Any = None,
    run_id: str | None = None,
    triggering_asset_events: Any = None,
) -> dict[str, Any]:
    """Open the run: resolve spec and data root, create the zones, audit ``run_start``; returns the run."""
    from medcurate.orchestration import prepare_run

    settings = run_settings(params or {}, triggering_asset_events)
    run_key = medcurate_run_id(dag.dag_id, run_id)
    return prepare_run(settings["spec"], settings["data_root"], run_key, demo=settings["demo"])


@task
def list_sources(run: dict[str, Any], kind: str | None = None) -> list[str]:
    """The spec's source names (of ``kind``), what ``ingest_source`` is mapped over."""
    from medcurate.orchestration import source_names

    return source_names(run, kind)


@task
def ingest_source(run: dict[str, Any], source: str) -> dict[str, Any]:
    """One source into the raw zone, with its own quarantine records and report fragment."""
    from medcurate.orchestration import ingest_source_for

    return ingest_source_for(run, source, secret_key())


def merge_task(skip_until_complete: bool = False):
    """The ingest stage's report from the sources' fragments.

    ``skip_until_complete``: a source that has never been ingested skips the task (and so the rest of the
    run) instead of failing it; ``deidentify`` uses it, as any one ``ingest_<kind>`` DAG triggers it and the
    first ingest of a corpus arrives one kind at a time.
    """

    @task(task_id="merge_ingest")
    def merge_ingest(run: dict[str, Any], units: Any = None) -> dict[str, Any]:
        """``units``: the mapped ingest results, passed only to order this task after them."""
        from airflow.sdk.exceptions import AirflowSkipException

        from medcurate.orchestration import merge_ingest_for, uningested_sources

        missing = uningested_sources(run) if skip_until_complete else []
        if missing:
            raise AirflowSkipException(f"waiting for the first ingest of source(s) {', '.join(missing)}")
        summary = merge_ingest_for(run, secret_key())
        return {**run, "stages": {**run.get("stages", {}), "ingest": summary}}

    return merge_ingest


def stage_task(stage: str):
    """A task running one library stage of the run it receives, returning the run with the stage's counts."""

    @task(task_id=stage, **({"pool": RAY_POOL} if stage in RAY_STAGES else {}))
    def run_one(run: dict[str, Any]) -> dict[str, Any]:
        from medcurate.orchestration import run_stage_for

        summary = run_stage_for(run, stage, secret_key())
        return {**run, "stages": {**run.get("stages", {}), stage: summary}}

    return run_one


def finish_task(outlet: Asset | None = None):
    """Close the run in the audit log and, with ``outlet``, announce the zone it updated to the next DAG."""

    @task(task_id="finish", outlets=[outlet] if outlet else [])
    def finish(run: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        from medcurate.orchestration import finish_run

        if outlet is not None:
            outlet_events[outlet].extra = {"spec": run["spec"], "data_root": run["data_root"], "demo": run["demo"]}
        return finish_run(run)

    return finish

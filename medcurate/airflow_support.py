"""What every medcurate DAG shares: params, default args, the failure audit, the assets and the common tasks.

It lives in the library rather than in ``dags/`` so that every DAG file, the DAG processor and the workers
import it the same way (a plain ``DagBag`` does not put ``dags/`` on ``sys.path``).  Parsing a DAG file runs
this module's top level, so it imports only the Airflow task SDK and the light floor of ``medcurate.core``
(names, zone locations, the spec model for its JSON Schema; no pyarrow); the medcurate stages are imported
inside the tasks, where their cost is paid once per task instead of once per parse.

Where a run's spec and data root come from, first match wins:

1. the DAG run's params (``airflow dags trigger -c '{"spec": ..., "data_root": ...}'``), when not null;
2. the latest asset event that triggered the run: every DAG that updates a zone puts ``{spec, data_root,
   demo}`` in its event's ``extra``, so the next DAG works on the same corpus;
3. the Airflow Variables ``MEDCURATE_SPEC`` / ``MEDCURATE_DATA_ROOT`` (so any secrets backend), read when
   the run starts rather than when the file is parsed;
4. the worker's environment variables of the same names;
5. no spec: the run refuses to start (an empty trigger form must not curate the demo by surprise; the bundled
   synthetic sample runs only when asked for with ``spec: sample``).  No data root: the spec's own.

Assets and lineage name a zone by its real location (``medcurate.core.locations``): ``finish`` adds an event
for ``file:///.../deid`` or ``s3://.../deid`` through the asset alias the next DAG is scheduled on, and each
stage task reports the zones it read and wrote to OpenLineage (``ZoneTaskOperator``).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk import Asset, AssetAlias, Param
from airflow.sdk.bases.decorator import task_decorator_factory

from medcurate.core.locations import TASK_ZONES, openlineage_name, zone_uri
from medcurate.core.names import SOURCE_KINDS
from medcurate.core.spec import spec_json_schema

log = logging.getLogger("medcurate")

KEY_VARIABLE = "MEDCURATE_PSEUDONYM_KEY"
SPEC_SETTING = "MEDCURATE_SPEC"
DATA_ROOT_SETTING = "MEDCURATE_DATA_ROOT"
# One slot by default: de-identification and sharding each start a Ray runtime that wants every core.
# The pool must exist (docs/operations.md, "Airflow"): the scheduler never starts a task of a missing pool.
RAY_POOL = os.environ.get("MEDCURATE_RAY_POOL", "medcurate_ray")

RAY_POOL_DESCRIPTION = "Ray-heavy medcurate tasks (deid, shard): each uses the whole Ray cluster"
RAY_STAGES = ("deid", "shard")
# How long a task may run before Airflow fails it (and retries it): the stages that read or write every
# document of a large corpus get a day, the bookkeeping tasks an hour, so a hung task frees its slot.
LONG_TASKS = ("ingest_source", "deid", "curate", "shard", "erase")
LONG_TIMEOUT = timedelta(hours=24)
SHORT_TIMEOUT = timedelta(hours=1)

# Asset aliases: a DAG's ``finish`` adds an event for the zone it updated, under its real URI
# (``file:///data/icu/deid``), through the alias the next DAG is scheduled on.  Each corpus so gets its own
# assets, and the event's extra hands the next DAG the spec and data root.
RAW_ALIASES = {kind: AssetAlias(f"medcurate_raw_{kind}") for kind in SOURCE_KINDS}
DEID_ALIAS = AssetAlias("medcurate_deid")
CURATED_ALIAS = AssetAlias("medcurate_curated")
SHARDS_ALIAS = AssetAlias("medcurate_shards")
# The zone behind each alias.
ALIAS_ZONES = {**{alias.name: "raw" for alias in RAW_ALIASES.values()}, "medcurate_deid": "deid"}
ALIAS_ZONES |= {"medcurate_curated": "curated", "medcurate_shards": "shards"}


def _spec_property(name: str) -> dict[str, Any]:
    """One property's JSON Schema from the corpus spec model, so a param and the spec share their rules."""
    schema = spec_json_schema()
    return {k: v for k, v in schema["properties"][name].items() if k not in ("default", "title")}


def location_param(description: str, required: bool = False) -> Param:
    """A spec path or data root (path or URI) param; ``required``: no null default.

    The rules are the spec's ``data_root`` (``medcurate.core.spec``): printable, at most 4096 characters.
    """
    schema = {**_spec_property("data_root"), "minLength": 1, "description": description}
    schema.pop("type", None)
    if required:
        return Param(type="string", **schema)
    return Param(None, type=["null", "string"], **schema)


def source_param(description: str) -> Param:
    """A source name param: the rules of the spec's ``sources[].name``."""
    name = spec_json_schema()["$defs"]["SourceSpec"]["properties"]["name"]
    return Param(type="string", pattern=name["pattern"], minLength=1, maxLength=64, description=description)


def run_params() -> dict[str, Param]:
    """The params of every run DAG, checked against their JSON schema before the run starts."""
    return {
        "spec": location_param(
            f"corpus spec path, or 'sample' for the synthetic demo; null: the triggering asset event, else "
            f"${SPEC_SETTING}, else the run refuses to start"
        ),
        "data_root": location_param(
            f"data root (path or s3:// URI); null: the asset event, ${DATA_ROOT_SETTING}, the spec's"
        ),
    }


def ensure_pool() -> bool:
    """Create the Ray pool (one slot) where it is missing; True when created.  An existing pool keeps the
    slots an operator gave it.  ``medcurate airflow-setup`` calls this on every deployment, after
    ``airflow db migrate``: the scheduler never starts a task of a pool that does not exist."""
    from airflow.models.pool import Pool

    if Pool.get_pool(RAY_POOL) is not None:
        return False
    Pool.create_or_update_pool(RAY_POOL, 1, RAY_POOL_DESCRIPTION, include_deferred=False)
    return True


def secret_key() -> str | None:
    """The pseudonymization key from the Airflow Variable (the secrets backend); None: the worker's env."""
    from airflow.sdk import Variable

    return Variable.get(KEY_VARIABLE, default=None)


def _setting(name: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(name, default=None) or os.environ.get(name) or None


class NoSpecGiven(ValueError):
    """Nothing names the corpus to curate: no param, no asset event, no setting."""


def run_settings(params: dict[str, Any], triggering_asset_events: Any = None) -> dict[str, Any]:
    """The run's ``{spec, data_root, demo}`` by the precedence in this module's docstring.

    Raises ``NoSpecGiven`` when nothing names a spec.
    """
    events = [event for events in (triggering_asset_events or {}).values() for event in events]
    latest = max(events, key=lambda event: event.timestamp).extra if events else {}
    if params.get("spec"):
        spec, demo = params["spec"], False
    elif latest.get("spec"):
        spec, demo = latest["spec"], bool(latest.get("demo"))
    elif setting := _setting(SPEC_SETTING):
        spec, demo = setting, False
    else:
        raise NoSpecGiven(
            f'no corpus spec: trigger with {{"spec": "/path/to/spec.yaml"}} (or "sample" for the '
            f"synthetic demo), or set the Airflow Variable {SPEC_SETTING}"
        )
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
            try:
                settings = run_settings(context["params"], context.get("triggering_asset_events"))
            except NoSpecGiven:
                return  # no corpus, so no audit log to write to; the task's log says why

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


class ZoneTaskOperator(_PythonDecoratedOperator):
    """A medcurate TaskFlow task that tells OpenLineage which zones of its corpus it read and wrote.

    The zones depend on the run (its data root arrives through XCom), so no static inlets or outlets can name
    them; the provider's default extractor calls ``get_openlineage_facets_on_complete`` instead.  The task's
    first argument, or its ``run`` keyword, is the run (``{spec, data_root, run_id, ...}``); ``reads`` and
    ``writes`` are zone names, formatted with the task's keyword arguments (``raw/{source}``).
    """

    def __init__(self, *, reads: tuple[str, ...] = (), writes: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads = reads
        self.writes = writes

    def _zone_uris(self, zones: tuple[str, ...]) -> list[str]:
        run = self.op_kwargs.get("run") or (self.op_args[0] if self.op_args else None)
        if not isinstance(run, dict) or not run.get("data_root"):
            return []
        return [zone_uri(run["data_root"], zone.format(**self.op_kwargs)) for zone in zones]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage

        def datasets(zones: tuple[str, ...]) -> list[Dataset]:
            return [Dataset(*openlineage_name(uri)) for uri in self._zone_uris(zones)]

        return OperatorLineage(inputs=datasets(self.reads), outputs=datasets(self.writes))


def zone_task(task_id: str, **kwargs: Any):
    """``@task`` for a step of a run: the zones it reads and writes (``TASK_ZONES``), its timeout, its pool,
    and the function's docstring as the task's ``doc_md`` (mapped tasks too, which TaskFlow leaves bare)."""
    reads, writes = TASK_ZONES.get(task_id, ((), ()))

    def decorate(function: Any) -> Any:
        return task_decorator_factory(
            python_callable=function,
            decorated_operator_class=ZoneTaskOperator,
            task_id=task_id,
            reads=reads,
            writes=writes,
            execution_timeout=LONG_TIMEOUT if task_id in LONG_TASKS else SHORT_TIMEOUT,
            **({"pool": RAY_POOL} if task_id in RAY_STAGES else {}),
            **{"doc_md": function.__doc__, **kwargs},
        )

    return decorate


def dag_settings(doc: str) -> dict[str, Any]:
    """What every run DAG passes to ``@dag``: the defaults below, its docstring as ``doc_md`` and the
    docstring's first line, after the DAG id, as the description the DAG list shows."""
    first = doc.strip().splitlines()[0]
    return {**DAG_DEFAULTS, "doc_md": doc, "description": first.split(": ", 1)[-1]}


DAG_DEFAULTS: dict[str, Any] = {
    "catchup": False,
    # Runs of one DAG rewrite the same zones: never two at once.
    "max_active_runs": 1,
    "default_args": DEFAULT_ARGS,
    "params": run_params(),
}


@zone_task("prepare")
def prepare(
    params: dict | None = None,
    dag: Any = None,
    run_id: str | None = None,
    triggering_asset_events: Any = None,
) -> dict[str, Any]:
    """Open the run: resolve spec and data root, create the zones, audit ``run_start``; returns the run."""
    from airflow.sdk.exceptions import AirflowFailException

    from medcurate.orchestration import prepare_run

    try:
        settings = run_settings(params or {}, triggering_asset_events)
    except NoSpecGiven as exc:
        raise AirflowFailException(str(exc)) from None  # a retry would not find a spec either
    run_key = medcurate_run_id(dag.dag_id, run_id)
    return prepare_run(settings["spec"], settings["data_root"], run_key, demo=settings["demo"])


@zone_task("list_sources")
def list_sources(run: dict[str, Any], kind: str | None = None) -> list[str]:
    """The spec's source names (of ``kind``), what ``ingest_source`` is mapped over."""
    from medcurate.orchestration import source_names

    return source_names(run, kind)


@zone_task("ingest_source", map_index_template="{{ medcurate_source }}")
def ingest_source(run: dict[str, Any], source: str) -> dict[str, Any]:
    """One source into the raw zone, with its own quarantine records and report fragment.

    Mapped over the spec's sources; each mapped task is labelled with its source's name in the UI.
    """
    from airflow.sdk import get_current_context

    from medcurate.orchestration import ingest_source_for

    get_current_context()["medcurate_source"] = source  # type: ignore[typeddict-unknown-key]
    return ingest_source_for(run, source, secret_key())


def merge_task(skip_until_complete: bool = False):
    """The ingest stage's report from the sources' fragments.

    ``skip_until_complete``: a source that has never been ingested skips the task (and so the rest of the
    run) instead of failing it; ``deidentify`` uses it, as any one ``ingest_<kind>`` DAG triggers it and the
    first ingest of a corpus arrives one kind at a time.
    """

    @zone_task("merge_ingest")
    def merge_ingest(run: dict[str, Any], units: Any = None) -> dict[str, Any]:
        """The ingest stage's report from the sources' fragments (``units``, the mapped ingest results, only
        orders this task after them)."""
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

    @zone_task(stage, doc_md=f"Runs the ``{stage}`` stage of the run (``medcurate.runner.STAGES``).")
    def run_one(run: dict[str, Any]) -> dict[str, Any]:
        from medcurate.orchestration import run_stage_for

        summary = run_stage_for(run, stage, secret_key())
        return {**run, "stages": {**run.get("stages", {}), stage: summary}}

    return run_one


def finish_task(outlet: AssetAlias | None = None):
    """Close the run in the audit log and, with ``outlet``, announce the zone it updated to the next DAG."""

    @zone_task("finish", outlets=[outlet] if outlet else [])
    def finish(run: dict[str, Any], outlet_events: Any = None) -> dict[str, Any]:
        """Close the run (``run_end``) and add an event for the updated zone, under its real URI, to the alias
        the next DAG is scheduled on; the event's extra is the run's spec, data root and demo flag."""
        from medcurate.orchestration import finish_run

        if outlet is not None:
            zone = Asset(zone_uri(run["data_root"], ALIAS_ZONES[outlet.name]))
            extra = {"spec": run["spec"], "data_root": run["data_root"], "demo": run["demo"]}
            outlet_events[outlet].add(zone, extra=extra)
        return finish_run(run)

    return finish

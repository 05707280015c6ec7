"""curate_medical_corpus: one full curation run of a corpus spec, stage by stage.

    prepare -> ingest -> validate_raw -> deid -> curate -> shard -> validate_shards -> catalog -> report -> finish

Each task runs one library stage (``medcurate.orchestration``); tasks exchange only the run's spec path,
data root and run id through XCom, never documents.  The pseudonymization key comes from the Airflow
Variable ``MEDCURATE_PSEUDONYM_KEY`` (i.e. from the configured secrets backend) or the worker's environment.
The default spec, ``sample``, generates and curates the bundled synthetic corpus.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag, task

KEY_VARIABLE = "MEDCURATE_PSEUDONYM_KEY"
# The stages of medcurate.runner.STAGES, spelled out so that parsing this file imports nothing heavy
# (pyarrow alone takes most of a second); tests/test_dags.py checks the two lists agree.
STAGE_NAMES = (
    "ingest",
    "validate_raw",
    "deid",
    "curate",
    "shard",
    "validate_shards",
    "catalog",
    "report",
)


def _secret_key() -> str | None:
    from airflow.sdk import Variable

    return Variable.get(KEY_VARIABLE, default=None)


@dag(
    dag_id="curate_medical_corpus",
    schedule=None,
    catchup=False,
    tags=["medcurate"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30), "retry_exponential_backoff": True},
    params={
        "spec": Param("sample", type="string", minLength=1, description="corpus spec path, or 'sample'"),
        "data_root": Param(None, type=["null", "string"], description="override the spec's data root"),
    },
    doc_md=__doc__,
)
def curate_medical_corpus():
    @task
    def prepare(params: dict | None = None, run_id: str | None = None) -> dict:
        from medcurate.orchestration import prepare_run

        return prepare_run(params["spec"], params["data_root"], run_id)

    def stage_task(stage: str):
        @task(task_id=stage)
        def run(run_info: dict) -> dict:
            from medcurate.orchestration import run_stage_for

            summary = run_stage_for(run_info, stage, _secret_key())
            return {**run_info, "stages": {**run_info.get("stages", {}), stage: summary}}

        return run

    @task
    def finish(run_info: dict) -> dict:
        from medcurate.orchestration import finish_run

        return finish_run(run_info)

    run_info = prepare()
    for stage in STAGE_NAMES:
        run_info = stage_task(stage)(run_info)
    finish(run_info)


curate_medical_corpus()

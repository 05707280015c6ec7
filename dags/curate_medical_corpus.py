"""curate_medical_corpus: one full curation run of a corpus spec, in one DAG run.

    prepare -> list_sources -> ingest_source (mapped: one task per source, in parallel) -> merge_ingest
      -> validate_raw -> deid -> curate -> shard -> validate_shards -> catalog -> report -> finish

Each task runs one library step (``medcurate.orchestration``); tasks exchange only the run (spec path, data
root, run id) and counts through XCom, never documents.  Each source is ingested by its own mapped task,
which rewrites only that source's raw parts and quarantine records; ``merge_ingest`` assembles the stage
report the later stages read.  ``deid`` and ``shard`` run in the ``medcurate_ray`` pool.  Params, the key,
retries and the ``task_failed`` audit event: ``medcurate.airflow_support``.  ``finish`` updates the shards
asset, so DAGs that consume trained-ready shards can be scheduled on it.  For the same chain driven by
assets, one DAG per step, see ``ingest_<kind>`` -> ``deidentify`` -> ``curate_corpus`` -> ``build_shards``.
"""

from __future__ import annotations

from airflow.sdk import dag

from medcurate.airflow_support import (
    SHARDS_ALIAS,
    dag_settings,
    finish_task,
    ingest_source,
    list_sources,
    merge_task,
    prepare,
    stage_task,
)
from medcurate.core.names import STAGE_NAMES


@dag(dag_id="curate_medical_corpus", schedule=None, tags=["medcurate"], **dag_settings(__doc__))
def curate_medical_corpus():
    run = prepare()
    units = ingest_source.partial(run=run).expand(source=list_sources(run))
    run = merge_task()(run, units)
    for stage in STAGE_NAMES[1:]:
        run = stage_task(stage)(run)
    finish_task(SHARDS_ALIAS)(run)


curate_medical_corpus()

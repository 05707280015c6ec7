"""build_shards: trainer-ready shards, their validation, the catalog and the report, after each curate_corpus.

    prepare -> shard -> validate_shards -> catalog -> report -> finish

Scheduled on the curated asset; spec and data root come from its event's extra (``medcurate.airflow_support``).
``shard`` runs in the ``medcurate_ray`` pool.  ``finish`` updates the shards asset for whatever trains on them.
"""

from __future__ import annotations

from airflow.sdk import dag

from medcurate.airflow_support import CURATED_ALIAS, SHARDS_ALIAS, dag_settings, finish_task, prepare, stage_task


@dag(dag_id="build_shards", schedule=[CURATED_ALIAS], tags=["medcurate"], **dag_settings(__doc__))
def build_shards():
    run = prepare()
    for stage in ("shard", "validate_shards", "catalog", "report"):
        run = stage_task(stage)(run)
    finish_task(SHARDS_ALIAS)(run)


build_shards()

"""curate_corpus: the de-identified zone through the quality gates into ``curated/``, after each deidentify.

    prepare -> curate -> finish

Scheduled on the deid asset; spec and data root come from its event's extra (``medcurate.airflow_support``).
``finish`` updates the curated asset, which triggers ``build_shards``.
"""

from __future__ import annotations

from airflow.sdk import dag

from medcurate.airflow_support import CURATED_ALIAS, DEID_ALIAS, dag_settings, finish_task, prepare, stage_task


@dag(dag_id="curate_corpus", schedule=[DEID_ALIAS], tags=["medcurate"], **dag_settings(__doc__))
def curate_corpus():
    finish_task(CURATED_ALIAS)(stage_task("curate")(prepare()))


curate_corpus()

"""deidentify: the raw zone, validated and de-identified, whenever any source kind was ingested.

    prepare -> merge_ingest -> validate_raw -> deid -> finish

Scheduled on any of the raw assets (``AssetAny``): a fresh ingest of one kind re-runs de-identification of
the whole raw zone, as ``deid`` rewrites its zone.  Spec and data root come from the triggering event's
extra (``medcurate.airflow_support``).  Until every source of the spec has been ingested once, ``merge_ingest``
is skipped with the missing sources named, and so is the rest of the run: no deid asset update.  ``finish``
updates the deid asset, which triggers ``curate_corpus``.  ``deid`` runs in the ``medcurate_ray`` pool.
"""

from __future__ import annotations

from airflow.sdk import AssetAny, dag

from medcurate.airflow_support import (
    DEID_ALIAS,
    RAW_ALIASES,
    dag_settings,
    finish_task,
    merge_task,
    prepare,
    stage_task,
)


@dag(
    dag_id="deidentify",
    schedule=AssetAny(*RAW_ALIASES.values()),
    tags=["medcurate"],
    **dag_settings(__doc__),
)
def deidentify():
    run = merge_task(skip_until_complete=True)(prepare())
    for stage in ("validate_raw", "deid"):
        run = stage_task(stage)(run)
    finish_task(DEID_ALIAS)(run)


deidentify()

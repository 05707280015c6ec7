"""ingest_<kind>: one DAG per source kind, ingesting the spec's sources of that kind into the raw zone.

    prepare -> list_sources -> ingest_source (mapped over the sources of this kind) -> finish

``finish`` adds an event for the corpus's raw zone (``file:///<data root>/raw`` or ``s3://...``) to the
kind's asset alias ``medcurate_raw_<kind>``, with ``{spec, data_root, demo}`` in the event's extra, which
triggers ``deidentify`` on the same corpus.  Each source's task rewrites only that
source (raw parts, quarantine records, report fragment), so re-running a DAG run, or one of its tasks, gives
the same raw zone.  A spec without a source of this kind skips the ingest tasks and updates nothing.
Trigger one with ``airflow dags trigger ingest_notes_csv -c '{"spec": "/corpora/icu.yaml"}'``; params and
their defaults: ``medcurate.airflow_support``.
"""

from __future__ import annotations

from airflow.sdk import dag

from medcurate.airflow_support import (
    RAW_ALIASES,
    dag_settings,
    finish_task,
    ingest_source,
    list_sources,
    prepare,
)
from medcurate.core.names import SOURCE_KINDS


def ingest_dag(kind: str):
    """The ingest DAG of one source kind (the six differ only in the kind they map over and announce)."""

    @dag(dag_id=f"ingest_{kind}", schedule=None, tags=["medcurate", "ingest"], **dag_settings(__doc__))
    def ingest():
        run = prepare()
        units = ingest_source.partial(run=run).expand(source=list_sources(run, kind))
        units >> finish_task(RAW_ALIASES[kind])(run)

    return ingest()


for _kind in SOURCE_KINDS:
    ingest_dag(_kind)

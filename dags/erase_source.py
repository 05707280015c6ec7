"""erase_source: remove one source's records from every zone (its licence was withdrawn) and rebuild the shards.

    erase

One task calling the same library function as ``medcurate erase --source NAME`` (``medcurate.erasure``):
the source's records leave raw, deid, curated and the quarantine index, the shards that held them are
rewritten, manifest and Merkle root updated, an ``erasure`` audit event appended and the catalog updated; the
task fails if any of the source's doc_ids remain in the published data.  ``source`` is a source name of the
spec (the rules of the spec's ``sources[].name``), checked before the run starts.  Drop the source from the
spec as well, or the next run ingests it again.  Keys, retries and the ``task_failed`` audit event are those
of every medcurate DAG (``medcurate.airflow_support``).
"""

from __future__ import annotations

from airflow.sdk import dag

from medcurate.airflow_support import DEFAULT_ARGS, location_param, secret_key, source_param, zone_task


@dag(
    dag_id="erase_source",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # two erasures rewriting the same shards at once would race
    default_args=DEFAULT_ARGS,
    tags=["medcurate", "governance"],
    params={
        "source": source_param("the source's name in the spec"),
        "spec": location_param("the corpus spec the data was built from", required=True),
        "data_root": location_param("override the spec's data root"),
    },
    doc_md=__doc__,
    description="remove one source's records from every zone (licence withdrawn) and rebuild the shards",
)
def erase_source():
    @zone_task("erase")
    def erase(params: dict | None = None) -> dict:
        """Erase the source everywhere, rebuild the affected shards, verify; returns counts."""
        from medcurate import erasure

        ctx = erasure.open_for_erasure(params["spec"], params["data_root"], demo=False, secret_key=secret_key())
        return erasure.erase(ctx, source=params["source"]).summary()

    erase()


erase_source()

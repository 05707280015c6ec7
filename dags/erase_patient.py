"""erase_patient: remove one patient's records from every zone and rebuild only the shards that held them.

    erase

One task calling the same library function as ``medcurate erase --patient KEY`` (``medcurate.erasure``):
records leave raw, deid, curated and the quarantine index, the affected shards are rewritten, manifest and
Merkle root updated, an ``erasure`` audit event appended and the catalog updated; the task fails if any of
the patient's doc_ids or raw identifiers remain in the published data.  ``patient_key`` is the key as the
source system wrote it (MRN, FHIR Patient id): it is checked against a JSON schema before the run starts and
never returned through XCom, which carries the pseudonym and counts only.  The key is PHI held in this DAG
run's conf: restrict who may read DAG runs in Airflow accordingly.  The pseudonymization key comes from the
Airflow Variable ``MEDCURATE_PSEUDONYM_KEY`` (the secrets backend) or the worker's environment.  Retries and
the ``task_failed`` audit event are those of every medcurate DAG (``medcurate.airflow_support``).
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from medcurate.airflow_support import DEFAULT_ARGS, location_param, secret_key, zone_task

# Identifiers as source systems write them: MRNs, FHIR ids, HL7 CX ids; no spaces, no control characters.
PATIENT_KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/^-]{0,127}$"


@dag(
    dag_id="erase_patient",
    schedule=None,
    catchup=False,
    max_active_runs=1,  # two erasures rewriting the same shards at once would race
    default_args=DEFAULT_ARGS,
    tags=["medcurate", "governance"],
    params={
        "patient_key": Param(
            type="string",
            minLength=1,
            maxLength=128,
            pattern=PATIENT_KEY_PATTERN,
            description="the patient key as the source system wrote it (MRN, FHIR Patient id)",
        ),
        "spec": location_param("the corpus spec the data was built from", required=True),
        "data_root": location_param("override the spec's data root"),
    },
    doc_md=__doc__,
    description="remove one patient's records from every zone and rebuild only the shards that held them",
)
def erase_patient():
    @zone_task("erase")
    def erase(params: dict | None = None) -> dict:
        """Erase the patient everywhere, rebuild the affected shards, verify; returns the pseudonym and counts."""
        from medcurate import erasure

        ctx = erasure.open_for_erasure(params["spec"], params["data_root"], demo=False, secret_key=secret_key())
        return erasure.erase(ctx, patient_key=params["patient_key"]).summary()

    erase()


erase_patient()

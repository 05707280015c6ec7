"""The Airflow DAGs: they import fast, their params are JSON-schema checked, every DAG runs on the sample.

Airflow runs in subprocesses with their own ``AIRFLOW_HOME`` (SQLite), so that this test process never
configures Airflow.  Several ``dag.test()`` calls share one subprocess where they can: each Airflow start-up
costs seconds of imports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from governance import audit
from medcurate.core.locations import zone_uri
from medcurate.core.names import SOURCE_KINDS, STAGE_NAMES
from medcurate.runner import STAGES

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
AIRFLOW = str(Path(sys.executable).parent / "airflow")
TEST_KEY = "dag-test-key-0123456789abcdef"
INGEST_DAGS = [f"ingest_{kind}" for kind in SOURCE_KINDS]
ASSET_CHAIN = ["deidentify", "curate_corpus", "build_shards"]
# The zone whose asset event starts each DAG of the asset chain (through the alias it is scheduled on).
TRIGGERED_BY = {"deidentify": "raw", "curate_corpus": "deid", "build_shards": "curated"}


def _airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "GX_ANALYTICS_ENABLED": "False",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
    )
    env.pop("MEDCURATE_PSEUDONYM_KEY", None)  # the sample run must work with its own throwaway key
    env.pop("MEDCURATE_SPEC", None)  # an empty trigger form must name no corpus
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str], cwd: Path | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; its result is its last stdout line that is a JSON object (Airflow
    logs before it, and the OpenLineage listener may log after it)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, cwd=cwd
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """One migrated SQLite metadata database for this module's DAG runs."""
    home = tmp_path_factory.mktemp("airflow")
    subprocess.run([AIRFLOW, "db", "migrate"], env=_airflow_env(home), capture_output=True, text=True, check=True)
    return home


def test_airflow_setup_creates_the_ray_pool_once_and_keeps_an_operators_slots(tmp_path: Path):
    env = _airflow_env(tmp_path)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=True)
    setup = [str(Path(AIRFLOW).parent / "medcurate"), "airflow-setup"]
    first = subprocess.run(setup, env=env, capture_output=True, text=True, check=True).stdout
    assert first.strip() == "pool medcurate_ray: created (1 slot)"
    subprocess.run(
        [AIRFLOW, "pools", "set", "medcurate_ray", "3", "bigger cluster"], env=env, check=True, capture_output=True
    )
    again = subprocess.run(setup, env=env, capture_output=True, text=True, check=True).stdout
    assert again.strip() == "pool medcurate_ray: exists, left as it is"
    pools = subprocess.run(
        [AIRFLOW, "pools", "get", "medcurate_ray", "-o", "json"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert '"slots": "3"' in pools or '"slots": 3' in pools, pools


def test_the_dag_stage_tasks_are_the_runners_stages_in_order():
    assert tuple(stage.name for stage in STAGES) == STAGE_NAMES


def test_dagbag_imports_fast_with_the_expected_dags_tasks_and_settings(tmp_path: Path):
    code = f"""
        import json, sys, time
        from airflow.dag_processing.dagbag import DagBag
        started = time.perf_counter()
        bag = DagBag({str(DAGS)!r})
        seconds = time.perf_counter() - started
        heavy = [m for m in ("pyarrow", "ray", "presidio_analyzer", "great_expectations", "pandas") if m in sys.modules]
        dags = {{}}
        for dag_id, dag in bag.dags.items():
            dags[dag_id] = {{
                "tasks": [t.task_id for t in dag.tasks],
                "mapped": sorted(t.task_id for t in dag.tasks if type(t).__name__ == "DecoratedMappedOperator"),
                "pools": {{t.task_id: t.pool for t in dag.tasks if t.pool != "default_pool"}},
                "retries": sorted({{t.retries for t in dag.tasks}}),
                "backoff": sorted({{t.retry_exponential_backoff for t in dag.tasks}}),
                "audited": all(t.on_failure_callback for t in dag.tasks),
                "description": dag.description,
                "undocumented": [t.task_id for t in dag.tasks if not (t.doc_md or t.partial_kwargs.get("doc_md")
                                 if hasattr(t, "partial_kwargs") else t.doc_md)],
                "timeouts": sorted({{str(t.execution_timeout or t.partial_kwargs.get("execution_timeout"))
                                    if hasattr(t, "partial_kwargs") else str(t.execution_timeout) for t in dag.tasks}}),
                "map_index_templates": {{t.task_id: t.partial_kwargs.get("map_index_template")
                                         for t in dag.tasks if hasattr(t, "partial_kwargs")}},
                "untyped_params": [k for k, p in dag.params.items() if "type" not in dag.params.get_param(k).schema],
                "max_active_runs": dag.max_active_runs,
                "schedule": str(getattr(dag.timetable, "asset_condition", None)),
            }}
        print(json.dumps({{"seconds": seconds, "errors": bag.import_errors, "heavy": heavy, "dags": dags}}))
    """
    out = _python(code, _airflow_env(tmp_path))
    assert out["errors"] == {}
    assert out["seconds"] < 1.0, out["seconds"]
    assert out["heavy"] == []
    dags = out["dags"]
    assert set(dags) == {"curate_medical_corpus", "erase_patient", "erase_source", *INGEST_DAGS, *ASSET_CHAIN}
    assert dags["curate_medical_corpus"]["tasks"] == [
        "prepare",
        "list_sources",
        "ingest_source",
        "merge_ingest",
        *STAGE_NAMES[1:],
        "finish",
    ]
    for dag_id in ["curate_medical_corpus", *INGEST_DAGS]:
        assert dags[dag_id]["mapped"] == ["ingest_source"], dag_id
        # The UI labels each mapped task with its source's name, which the task puts in its context.
        assert dags[dag_id]["map_index_templates"] == {"ingest_source": "{{ medcurate_source }}"}, dag_id
    assert dags["curate_medical_corpus"]["pools"] == {"deid": "medcurate_ray", "shard": "medcurate_ray"}
    assert dags["deidentify"]["tasks"] == ["prepare", "merge_ingest", "validate_raw", "deid", "finish"]
    assert dags["build_shards"]["pools"] == {"shard": "medcurate_ray"}
    assert all(f"medcurate_raw_{kind}" in dags["deidentify"]["schedule"] for kind in SOURCE_KINDS)
    assert dags["deidentify"]["schedule"].startswith("AssetAny(")
    assert "medcurate_deid" in dags["curate_corpus"]["schedule"]
    assert "medcurate_curated" in dags["build_shards"]["schedule"]
    for dag_id, dag in dags.items():
        assert dag["retries"] == [2] and dag["backoff"] == [2.0] and dag["audited"], dag_id
        assert dag["untyped_params"] == [] and dag["max_active_runs"] == 1, dag_id
        assert dag["description"] and dag["undocumented"] == [], dag_id
        assert "None" not in dag["timeouts"], dag_id


def test_params_are_checked_and_the_asset_event_hands_on_the_corpus(tmp_path: Path):
    code = f"""
        import copy, json
        from datetime import datetime, timezone
        from airflow.dag_processing.dagbag import DagBag
        from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
        from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
        from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
        from medcurate.airflow_support import NoSpecGiven, run_settings

        bag = DagBag({str(DAGS)!r})

        def rejected(dag_id, conf):
            params = copy.deepcopy(bag.dags[dag_id].params)
            try:
                params.update(conf)
                params.validate()
            except Exception as exc:
                return type(exc).__name__
            return None

        def event(name, extra, hour):
            return AssetEventDagRunReferenceResult(
                asset=AssetReferenceAssetEventDagRun(name=name, uri=name, extra={{}}),
                extra=extra, source_task_id="finish", source_dag_id="ingest_x", source_run_id="r",
                source_map_index=-1, source_aliases=[], timestamp=datetime(2026, 1, 1, hour, tzinfo=timezone.utc),
            )

        events = TriggeringAssetEventsAccessor.build([
            event("file:///old/raw", {{"spec": "/old.yaml", "data_root": "/old", "demo": False}}, 1),
            event("file:///new/raw", {{"spec": "/new.yaml", "data_root": "/new", "demo": True}}, 2),
        ])
        try:
            run_settings({{"spec": None, "data_root": None}})
            no_spec = None
        except NoSpecGiven as exc:
            no_spec = str(exc)
        print(json.dumps({{
            "ok": rejected("curate_medical_corpus", {{"spec": "sample", "data_root": "/tmp/x"}}),
            "empty_spec": rejected("curate_medical_corpus", {{"spec": ""}}),
            "control_char": rejected("deidentify", {{"data_root": "/tmp/a\\nb"}}),
            "number": rejected("ingest_fhir", {{"spec": 7}}),
            "bad_patient_key": rejected("erase_patient", {{"spec": "s.yaml", "patient_key": "a b"}}),
            "bad_source": rejected("erase_source", {{"spec": "s.yaml", "source": "../raw"}}),
            "good_source": rejected("erase_source", {{"spec": "s.yaml", "source": "icu_notes"}}),
            "no_spec": no_spec,
            "from_event": run_settings({{"spec": None, "data_root": None}}, events),
            "from_params": run_settings({{"spec": "/mine.yaml", "data_root": "/mine"}}, events),
        }}))
    """
    out = _python(code, _airflow_env(tmp_path))
    assert out["ok"] is None
    assert out["empty_spec"] == out["control_char"] == out["number"] == out["bad_patient_key"] == out["bad_source"]
    assert out["good_source"] is None
    # An empty form with no MEDCURATE_SPEC setting names no corpus: the run refuses instead of curating the demo.
    assert out["no_spec"].startswith("no corpus spec: trigger with")
    assert out["empty_spec"] == "ParamValidationError"
    # The latest event wins; explicit params win over any event.
    assert out["from_event"] == {"spec": "/new.yaml", "data_root": "/new", "demo": True}
    assert out["from_params"] == {"spec": "/mine.yaml", "data_root": "/mine", "demo": False}


DAG_TEST_CODE = """
    import json
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.settings import Session
    from sqlalchemy import select

    bag = DagBag({dags!r})
    out = {{"states": {{}}, "extras": {{}}, "mapped": {{}}}}
    for dag_id, conf, no_retries in {plan!r}:
        dag = bag.dags[dag_id]
        if no_retries:  # a failure test must not wait for the retry backoff
            for t in dag.tasks:
                t.retries = 0
        state = dag.test(run_conf=conf).state
        out["states"][dag_id] = getattr(state, "value", state)
    with Session() as session:
        query = select(AssetModel.uri, AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        for name, extra in session.execute(query.order_by(AssetEvent.id)):
            out["extras"][name] = extra  # the latest event of each asset
        query = select(TaskInstance.dag_id, TaskInstance.rendered_map_index).where(TaskInstance.map_index >= 0)
        for dag_id, label in session.execute(query.order_by(TaskInstance.map_index)):
            out["mapped"].setdefault(dag_id, []).append(label)  # what the UI shows for each mapped task
    print(json.dumps(out))
"""


def _dag_test(env: dict[str, str], plan: list[tuple[str, dict, bool]], cwd: Path) -> dict:
    """``dag.test()`` of each (dag_id, conf, no_retries) in order, in one interpreter; states and event extras."""
    return _python(DAG_TEST_CODE.format(dags=str(DAGS), plan=plan), env, cwd=cwd)


def test_a_failing_task_writes_a_task_failed_audit_event(airflow_home: Path, tmp_path: Path):
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "a.csv").write_text("note_id,subject_id,text\n1,2,Seen today.\n")
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "sources:\n  - {name: notes, kind: notes_csv, paths: ['in/*.csv'], license: synthetic, legal_basis: waiver, "
        "options: {colums: {}}}\n"  # a misspelt parser option: the mapped ingest task fails
    )
    data_root = tmp_path / "data"
    env = _airflow_env(airflow_home, MEDCURATE_PSEUDONYM_KEY=TEST_KEY)
    plan = [("curate_medical_corpus", {"spec": str(spec), "data_root": str(data_root)}, True)]
    out = _dag_test(env, plan, tmp_path)
    assert out["states"] == {"curate_medical_corpus": "failed"}
    events = audit.read_events(data_root / "governance")
    failed = [e for e in events if e["type"] == audit.TASK_FAILED]
    assert [e["details"] for e in failed] == [
        {
            "dag_id": "curate_medical_corpus",
            "task_id": "ingest_source",
            "map_index": 0,
            "try_number": 1,
            "error": "SpecError",
            "final": True,
        }
    ]
    assert failed[0]["run_id"] == next(e["run_id"] for e in events if e["type"] == audit.RUN_START)
    assert audit.verify(data_root / "governance").ok
    assert "colums" not in (data_root / "governance" / "audit.log.jsonl").read_text()


def test_openlineage_events_name_the_corpus_zones_and_an_empty_form_refuses(airflow_home: Path, tmp_path: Path):
    """The OpenLineage provider, with its file transport, as an operator configures it; events are read back."""
    incoming = tmp_path / "in"
    incoming.mkdir()
    (incoming / "mrn-4711.csv").write_text(
        "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text\n"
        "10-DS-1,101,201,DS,1,2180-01-02 10:00:00,,Pt seen for chest pain. Stable, discharged home.\n"
    )
    spec = tmp_path / "corpus.yaml"
    spec.write_text(
        "sources:\n  - {name: notes, kind: notes_csv, paths: ['in/*.csv'], license: synthetic, legal_basis: waiver}\n"
    )
    data_root = (tmp_path / "data").resolve()
    events_file = tmp_path / "openlineage.jsonl"
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    env = _airflow_env(
        airflow_home,
        MEDCURATE_PSEUDONYM_KEY=TEST_KEY,
        AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport),
        AIRFLOW__OPENLINEAGE__NAMESPACE="medcurate-test",
    )
    plan = [
        ("curate_medical_corpus", {}, True),  # the empty form
        ("ingest_notes_csv", {"spec": str(spec), "data_root": str(data_root)}, False),
    ]
    out = _dag_test(env, plan, tmp_path)
    assert out["states"] == {"curate_medical_corpus": "failed", "ingest_notes_csv": "success"}
    # Each mapped ingest task is labelled by its source (the module's other runs share this database).
    assert "notes" in out["mapped"]["ingest_notes_csv"] and None not in out["mapped"]["ingest_notes_csv"]
    assert not (tmp_path / "medcurate-demo").exists()  # the refused run generated no sample either

    text = events_file.read_text()
    assert "mrn-4711" not in text and "chest pain" not in text  # no source file name, no record text
    events = [json.loads(line) for line in text.splitlines()]
    completed = {e["job"]["name"]: e for e in events if e["eventType"] == "COMPLETE"}
    assert {e["job"]["namespace"] for e in events} == {"medcurate-test"}
    ingest = completed["ingest_notes_csv.ingest_source"]
    assert ingest["outputs"] == [
        {"namespace": "file", "name": f"{data_root}/raw/notes", "facets": ingest["outputs"][0]["facets"]}
    ]
    finish = completed["ingest_notes_csv.finish"]
    assert [(d["namespace"], d["name"]) for d in finish["outputs"]] == [("file", f"{data_root}/raw")]
    failed = [e for e in events if e["eventType"] == "FAIL"]
    assert [e["job"]["name"] for e in failed if "." in e["job"]["name"]] == ["curate_medical_corpus.prepare"]


@pytest.mark.slow
def test_airflow_dags_test_curates_the_sample(tmp_path: Path):
    home = tmp_path / "airflow"
    home.mkdir()
    data_root = tmp_path / "data"
    env = _airflow_env(home)
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True, check=True)
    started = time.time()
    result = subprocess.run(
        [
            AIRFLOW,
            "dags",
            "test",
            "curate_medical_corpus",
            "-c",
            json.dumps({"spec": "sample", "data_root": str(data_root)}),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (data_root / "governance" / "report.html").stat().st_mtime >= started
    manifest = json.loads((data_root / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["tokens"] > 0
    stages = {p.stem for p in (data_root / "governance" / "stages").glob("*.json")}
    assert stages == set(STAGE_NAMES)
    # One ingest unit (mapped task) per source of the sample, each audited, merged into one stage report.
    units = {p.stem for p in (data_root / "governance" / "stages" / "ingest").glob("*.json")}
    assert len(units) == len(SOURCE_KINDS)
    ended = [e["details"]["unit"] for e in audit.read_events(data_root / "governance") if e["type"] == audit.UNIT_END]
    assert sorted(ended) == sorted(units)
    runs = subprocess.run(
        [AIRFLOW, "dags", "list-runs", "curate_medical_corpus", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listing = re.search(r"^\[(\{|\])", runs, re.MULTILINE)  # the CLI logs warnings before its JSON
    assert listing, runs[-2000:]
    states = [run["state"] for run in json.loads(runs[listing.start() :].splitlines()[0])]
    assert states == ["success"]


def _patient_with_documents(raw: Path) -> str:
    parts = [str(p) for p in sorted(raw.rglob("*.parquet")) if not p.name.startswith(".")]
    return duckdb.execute(
        "SELECT patient_key FROM read_parquet(?) WHERE patient_key IS NOT NULL "
        "GROUP BY patient_key ORDER BY count(DISTINCT source) DESC, patient_key LIMIT 1",
        [parts],
    ).fetchone()[0]


def _patient_docs(raw: Path, key: str) -> int:
    parts = [str(p) for p in sorted(raw.rglob("*.parquet")) if not p.name.startswith(".")]
    return duckdb.execute("SELECT count(*) FROM read_parquet(?) WHERE patient_key = ?", [parts, key]).fetchone()[0]


@pytest.mark.slow
def test_the_asset_driven_dags_curate_the_sample_and_erase_patient_removes_one(airflow_home: Path, tmp_path: Path):
    """Each ingest_<kind>, then deidentify, curate_corpus and build_shards, each started with the extra of the
    asset event its upstream DAG wrote (what the scheduler hands on); then erase_patient on the result."""
    data_root = (tmp_path / "data").resolve()
    events_file = tmp_path / "openlineage.jsonl"
    transport = json.dumps({"type": "file", "log_file_path": str(events_file), "append": True})
    env = _airflow_env(airflow_home, MEDCURATE_PSEUDONYM_KEY=TEST_KEY, AIRFLOW__OPENLINEAGE__TRANSPORT=transport)
    first = {"spec": "sample", "data_root": str(data_root)}
    out = _dag_test(env, [(dag_id, first, False) for dag_id in INGEST_DAGS], tmp_path)
    assert out["states"] == dict.fromkeys(INGEST_DAGS, "success")
    # Every ingest DAG announced the corpus's own raw zone, by its real location.
    extra = out["extras"][zone_uri(str(data_root), "raw")]
    sample_spec = str(data_root / "sample-corpus" / "sample.yaml")
    assert extra == {"spec": sample_spec, "data_root": str(data_root), "demo": True}

    for dag_id in ASSET_CHAIN:
        conf = {k: v for k, v in out["extras"][zone_uri(str(data_root), TRIGGERED_BY[dag_id])].items() if k != "demo"}
        out = _dag_test(env, [(dag_id, conf, False)], tmp_path)
        assert out["states"] == {dag_id: "success"}, dag_id
    assert out["extras"][zone_uri(str(data_root), "shards")]["data_root"] == str(data_root)
    manifest = json.loads((data_root / "shards" / "manifest.json").read_text())
    assert manifest["totals"]["tokens"] > 0
    assert (data_root / "governance" / "report.html").exists()
    assert {p.stem for p in (data_root / "governance" / "stages").glob("*.json")} == set(STAGE_NAMES)
    # Every DAG run was its own medcurate run, opened and closed in the audit log.
    events = audit.read_events(data_root / "governance")
    started = {e["run_id"].split("__")[0] for e in events if e["type"] == audit.RUN_START}
    assert started == {*INGEST_DAGS, *ASSET_CHAIN}
    assert [e for e in events if e["type"] == audit.RUN_END and e["run_id"].startswith("build_shards")]

    # OpenLineage links the DAGs through the zones: each stage's output is the next stage's input.
    lineage = {}
    for line in events_file.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] == "COMPLETE" and event["job"]["name"].count(".") == 1:
            names = [[d["name"].removeprefix(f"{data_root}/") for d in event[side]] for side in ("inputs", "outputs")]
            lineage[event["job"]["name"]] = names
    assert lineage["deidentify.deid"] == [["raw"], ["deid"]]
    assert lineage["curate_corpus.curate"] == [["deid"], ["curated"]]
    assert lineage["build_shards.shard"] == [["curated"], ["shards"]]
    assert lineage["build_shards.finish"] == [[], ["shards"]]

    key = _patient_with_documents(data_root / "raw")
    erase = {"patient_key": key, "spec": extra["spec"], "data_root": str(data_root)}
    out = _dag_test(env, [("erase_patient", erase, False)], tmp_path)
    assert out["states"] == {"erase_patient": "success"}
    assert _patient_docs(data_root / "raw", key) == 0
    assert audit.read_events(data_root / "governance")[-1]["type"] == audit.ERASURE

    # A source whose licence was withdrawn: erase_source removes every one of its documents.
    erase = {"source": "pmc_oa", "spec": extra["spec"], "data_root": str(data_root)}
    out = _dag_test(env, [("erase_source", erase, False)], tmp_path)
    assert out["states"] == {"erase_source": "success"}
    last = audit.read_events(data_root / "governance")[-1]
    assert (last["type"], last["details"].get("kind"), last["details"].get("subject")) == (
        audit.ERASURE,
        "source",
        "pmc_oa",
    )
    assert audit.verify(data_root / "governance").ok

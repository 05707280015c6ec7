"""No Docker engine runs here, so the compose file is checked structurally against what the code expects."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ONE_SHOT = {"airflow-init", "minio-init"}
DATA_MOUNT = "medcurate-data:/data"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY(_ID)?$|CONN$|BACKEND$|ACCESS_KEY")
INTERPOLATED = re.compile(r"\$\{[A-Z_]+(:\?[^}]*|:-[^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _project(services: dict) -> dict:
    return {name: s for name, s in services.items() if s.get("build") == "."}


def _airflow(services: dict) -> dict:
    return {name: s for name, s in services.items() if "AIRFLOW__CORE__EXECUTOR" in s.get("environment", {})}


def _env(service: dict) -> dict:
    return service.get("environment") or {}


def _command(service: dict) -> str:
    command = service.get("command") or service.get("entrypoint") or []
    return " ".join(command) if isinstance(command, list) else command


def test_every_component_of_the_issue_is_a_service(services):
    expected = {
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "ray-head",
        "ray-worker",
    }
    assert expected <= set(services)
    commands = {name: _command(services[name]) for name in expected - {"postgres", "redis"}}
    assert commands["airflow-worker"] == "airflow celery worker"
    assert commands["airflow-dag-processor"] == "airflow dag-processor"
    assert commands["airflow-triggerer"] == "airflow triggerer"
    assert commands["airflow-apiserver"] == "airflow api-server"
    assert services["ray-worker"]["deploy"]["replicas"] >= 1


def test_long_running_services_have_health_checks_and_one_shots_are_awaited(services):
    for name, service in services.items():
        if name in ONE_SHOT:
            assert "healthcheck" not in service, name
        else:
            assert service["healthcheck"]["test"], name


def test_dependencies_exist_and_wait_for_the_right_condition(services):
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services and target != name, (name, target)
            expected = "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
            assert rule["condition"] == expected, (name, target)
            # A service outside a profile may only depend optionally on a profile's service.
            if services[target].get("profiles") and not service.get("profiles"):
                assert rule.get("required") is False, (name, target)
    for name in _airflow(services):
        if name != "airflow-init":
            assert {"postgres", "redis", "airflow-init"} <= set(services[name]["depends_on"]), name
    assert {"airflow-apiserver", "ray-head"} <= set(services["airflow-worker"]["depends_on"])


def test_airflow_runs_celery_on_redis_with_one_database(services):
    airflow = _airflow(services)
    assert set(airflow) >= {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-worker"}
    for name, service in airflow.items():
        env = _env(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port == 6379, name
        for setting in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
            assert "@postgres:5432/airflow" in env[setting], (name, setting)
        api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        api_port = services["airflow-apiserver"]["ports"][0].split(":")[-1]
        assert api.hostname == "airflow-apiserver" and str(api.port) == api_port, name
    # The executor's provider is a pinned, installed dependency.
    import airflow.providers.celery  # noqa: F401

    assert "apache-airflow-providers-celery" in (REPO / "requirements.in").read_text()
    assert "apache-airflow-providers-celery" in (REPO / "pyproject.toml").read_text()
    assert "\napache-airflow-providers-celery==" in (REPO / "requirements.lock").read_text()


def test_init_migrates_sets_the_admin_password_once_and_creates_the_pool(services):
    from medcurate.airflow_support import RAY_POOL

    init = services["airflow-init"]
    script = _command(init)
    assert "airflow db migrate" in script
    assert script.index("airflow db migrate") < script.index("medcurate airflow-setup")  # creates the pool
    # OpenLineage events go to a file on the data volume unless .env names another transport (e.g. Marquez).
    env = _env(init)
    assert env["OPENLINEAGE__TRANSPORT__TYPE"] == "file" and "/data/lineage" in script
    assert env["OPENLINEAGE__TRANSPORT__LOG_FILE_PATH"].startswith("/data/lineage/")
    passwords = _env(init)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    assert 'if [ ! -s "$$passwords" ]' in script and "AIRFLOW_ADMIN_PASSWORD" in script
    # The file the init writes is the one the API server reads, on a volume only those two mount.
    auth_mount = next(v for v in init["volumes"] if v.endswith(":" + str(Path(passwords).parent)))
    assert [name for name, s in services.items() if auth_mount in s.get("volumes", [])] == [
        "airflow-init",
        "airflow-apiserver",
    ]
    for name, service in _airflow(services).items():
        assert _env(service).get("MEDCURATE_RAY_POOL", RAY_POOL) == RAY_POOL, name


def test_environment_carries_what_the_code_reads(services):
    from medcurate.airflow_support import DATA_ROOT_SETTING, KEY_VARIABLE
    from medcurate.cli import DATA_ROOT_ENV
    from medcurate.core.keys import KEY_ENV
    from medcurate.core.storage import WORK_DIR_ENV

    assert KEY_VARIABLE == KEY_ENV
    for name, service in _airflow(services).items():
        env = _env(service)
        # The DAGs read the key as an Airflow Variable: AIRFLOW_VAR_<name> is Airflow's environment backend.
        assert env[f"AIRFLOW_VAR_{KEY_VARIABLE}"].startswith("${MEDCURATE_PSEUDONYM_KEY:?"), name
        assert DATA_ROOT_SETTING == DATA_ROOT_ENV and env[DATA_ROOT_ENV].startswith("${MEDCURATE_DATA_ROOT:-/data/")
        assert env[WORK_DIR_ENV].startswith("/data/"), name  # working copies where every Ray node sees them
    # Every MEDCURATE_* name the file sets is one the code reads (a typo would be silently ignored).
    packages = ("medcurate", "pipelines", "governance")
    source = "\n".join(p.read_text() for d in packages for p in (REPO / d).rglob("*.py"))
    for name, service in _project(services).items():
        for var in _env(service):
            if var.startswith("MEDCURATE_"):
                assert f'"{var}"' in source, (name, var)


def test_ray_address_points_at_the_head_port(services):
    head_port = next(a for a in services["ray-head"]["command"] if a.startswith("--port=")).split("=")[1]
    assert f"--address=ray-head:{head_port}" in services["ray-worker"]["command"]
    for name, service in _project(services).items():
        assert _env(service)["RAY_ADDRESS"] == f"${{RAY_ADDRESS:-ray-head:{head_port}}}", name  # .env may override


def test_one_data_volume_at_the_same_path_everywhere(compose, services):
    assert "medcurate-data" in compose["volumes"]
    for name, service in _project(services).items():
        assert service["image"] == "medcurate:latest", name
        assert DATA_MOUNT in service["volumes"], name
        assert not [v for v in service["volumes"] if v.endswith(":/data") and v != DATA_MOUNT], name


def test_no_secret_is_written_into_the_file(services):
    for name, service in services.items():
        for var, value in _env(service).items():
            if SECRET_NAME.search(var) and not var.endswith("_FILE"):  # a path to a secret is not one
                assert value is None or INTERPOLATED.search(str(value)), (name, var)
                # An interpolated connection string may hold no literal password either.
                assert not re.search(r"://[^:/@]+:[^$@][^@]*@", str(value or "")), (name, var)
    # Ray nodes run analyzers and the tokenizer; they get neither the key nor the database.
    for name in ("ray-head", "ray-worker"):
        env = _env(services[name])
        assert not [v for v in env if v.startswith("AIRFLOW")], name


def test_optional_object_store_provides_the_bucket(services):
    minio, init = services["minio"], services["minio-init"]
    assert minio["profiles"] == init["profiles"] == ["s3"]
    assert "mc mb --ignore-existing store/medcurate" in _command(init)
    assert minio["environment"]["MINIO_ROOT_USER"].startswith("${AWS_ACCESS_KEY_ID")
    for name, service in _airflow(services).items():
        env = _env(service)
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= set(env), name


def test_dockerfile_installs_from_the_lock_and_ships_the_dags():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "make install" in dockerfile
    workdir = re.search(r"^WORKDIR (\S+)", dockerfile, re.M).group(1)
    assert f"AIRFLOW__CORE__DAGS_FOLDER={workdir}/dags" in dockerfile
    assert "COPY dags ./dags" in dockerfile
    assert "/opt/airflow/auth" in dockerfile and "/data" in dockerfile  # volume mount points owned by the user

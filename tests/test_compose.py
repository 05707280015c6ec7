"""No Docker engine runs here, so the compose file is checked structurally against what the code expects."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_are_all_there_with_health_checks():
    services = _compose()["services"]
    expected = {
        "postgres",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "ray-head",
        "ray-worker",
    }
    assert expected <= set(services)
    for name in expected - {"airflow-init"}:
        assert "healthcheck" in services[name], name


def test_project_services_share_image_data_volume_and_secrets_from_env():
    services = _compose()["services"]
    for name, service in services.items():
        if name == "postgres":
            continue
        assert service["build"] == "." and "medcurate-data:/data" in service["volumes"], name
        env = service["environment"]
        assert env["AIRFLOW_VAR_MEDCURATE_PSEUDONYM_KEY"].startswith("${MEDCURATE_PSEUDONYM_KEY")
        assert env["RAY_ADDRESS"].split(":")[0] == "ray-head"
        assert "postgres:5432" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    head_port = next(a for a in services["ray-head"]["command"] if a.startswith("--port=")).split("=")[1]
    assert services["airflow-scheduler"]["environment"]["RAY_ADDRESS"].endswith(":" + head_port)


def test_dockerfile_installs_from_the_lock_and_ships_the_dags():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "requirements.lock" in dockerfile and "make install" in dockerfile
    assert "AIRFLOW__CORE__DAGS_FOLDER=/opt/medcurate/dags" in dockerfile
    assert "COPY dags" in dockerfile

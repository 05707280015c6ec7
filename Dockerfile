# The project image: the pinned environment plus the project, used by every Airflow and Ray service.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    GX_ANALYTICS_ENABLED=False RAY_USAGE_STATS_ENABLED=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    AIRFLOW_HOME=/opt/airflow AIRFLOW__CORE__DAGS_FOLDER=/opt/medcurate/dags AIRFLOW__CORE__LOAD_EXAMPLES=False \
    PATH=/opt/medcurate/.venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends make curl && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 50000 medcurate

WORKDIR /opt/medcurate
COPY requirements.lock requirements-bootstrap.txt pyproject.toml Makefile README.md ./
COPY medcurate ./medcurate
COPY pipelines ./pipelines
COPY governance ./governance
COPY dags ./dags
RUN make install && chown -R medcurate /opt/medcurate && mkdir -p /opt/airflow/auth /data \
    && chown medcurate /opt/airflow /opt/airflow/auth /data

USER medcurate

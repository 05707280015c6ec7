"""A corpus's zones as URIs: the one name its Airflow assets and its OpenLineage datasets share.

Two corpora curated by one deployment live under different data roots, so a zone is named by where it is
(``file:///data/icu/deid``, ``s3://bucket/icu/deid``), never by a namespace shared by every corpus.  Only
zone directories are named, never a file in them: a source file's name is PHI (``medcurate.core.source_files``).
No pyarrow, no Airflow: DAG files import this at parse time.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

# What each Airflow task of a run reads and writes, by zone ("raw/{source}": the one source a mapped
# ingest task writes).  Quarantine and governance are written by every stage and left out: lineage follows
# the documents.
TASK_ZONES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ingest_source": ((), ("raw/{source}",)),
    "merge_ingest": (("raw",), ()),
    "validate_raw": (("raw",), ()),
    "deid": (("raw",), ("deid",)),
    "curate": (("deid",), ("curated",)),
    "shard": (("curated",), ("shards",)),
    "validate_shards": (("shards",), ()),
    "catalog": (("curated", "shards"), ("governance/catalog",)),
    "report": (("governance/catalog",), ("governance/report",)),
}


def zone_uri(data_root: str, zone: str) -> str:
    """``data_root`` (a local path or an object-store URI) joined with ``zone``, as a URI."""
    if "://" in data_root:
        return f"{data_root.rstrip('/')}/{zone}"
    return f"{Path(data_root).resolve().as_uri()}/{zone}"


def openlineage_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a zone URI by the OpenLineage naming spec: ``file`` + path, ``s3://bucket`` + key."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return "file", unquote(parts.path)
    return f"{parts.scheme}://{parts.netloc}", unquote(parts.path).lstrip("/")

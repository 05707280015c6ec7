"""Zone URIs: what the Airflow assets and the OpenLineage datasets of a corpus are called."""

from __future__ import annotations

from pathlib import Path

from medcurate.core.locations import openlineage_name, zone_uri


def test_a_local_zone_is_a_file_uri_and_an_openlineage_file_dataset(tmp_path: Path):
    root = tmp_path / "my corpus"
    uri = zone_uri(str(root), "deid")
    assert uri == root.resolve().as_uri() + "/deid"
    assert openlineage_name(uri) == ("file", f"{root.resolve()}/deid")


def test_an_object_store_zone_keeps_its_bucket_as_the_namespace():
    uri = zone_uri("s3://bucket/corpora/icu/", "raw/notes")
    assert uri == "s3://bucket/corpora/icu/raw/notes"
    assert openlineage_name(uri) == ("s3://bucket", "corpora/icu/raw/notes")


def test_two_corpora_never_share_a_zone_name(tmp_path: Path):
    assert zone_uri(str(tmp_path / "a"), "shards") != zone_uri(str(tmp_path / "b"), "shards")

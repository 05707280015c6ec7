"""The same corpus and key give byte-identical curated Parquet and shards whatever the batch size and the
number of Ray workers (issue 14): the spec's ``parallel`` section cuts the work, never changes it.

The session's sample run (``sample_run``: the default batches, 64 texts per de-identification call and 1,024
rows per tokenization call, on 2 actors) is run again through the content stages, ingest to shard, in a fresh
data root with the same corpus, key and run id, but 7 documents per Ray call on 1 actor: the scaled-down
"batch size 10,000 and 2 workers / 1,000 and 1 worker" of the issue (the sample is a few hundred documents),
and Great Expectations validating partitions of 13 rows instead of each source whole.
Real Ray (the session's), real Presidio, real Great Expectations.  ``test_ray_cluster.py`` compares a third
cut, 16 documents per call over two Ray nodes, with the same run.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from zone_digests import zone_digests

CONTENT_STAGES = ("ingest", "validate_raw", "deid", "curate", "shard")


@pytest.mark.slow
def test_curated_parquet_and_shards_do_not_depend_on_batch_size_or_workers(sample_run, tmp_path: Path, monkeypatch):
    from medcurate.core.spec import load_spec
    from medcurate.core.zones import make_private_dir
    from medcurate.runner import DEMO_KEY_FILE, open_run, run_stage

    # Beside the sample's own spec: a source file's opaque id is keyed on its path, so the corpus must not move.
    spec = sample_run.sample_dir / "sample-batch-7.yaml"
    spec.write_text((sample_run.sample_dir / "sample.yaml").read_text() + "parallel: {batch_docs: 7, workers: 1}\n")
    assert load_spec(spec).parallel.workers == 1
    # And Great Expectations sees each source in partitions of 13 rows, where the sample run saw one.
    monkeypatch.setattr("pipelines.quality.frame_partitions.ROWS_PER_PARTITION", 13)
    key_file = tmp_path / "data" / DEMO_KEY_FILE
    make_private_dir(key_file.parent)
    key_file.write_text((sample_run.zones.root / DEMO_KEY_FILE).read_text())
    key_file.chmod(0o600)
    try:
        ctx = open_run(spec, data_root=tmp_path / "data", run_id=sample_run.ctx.run_id, demo=True)
        for stage in CONTENT_STAGES:
            run_stage(ctx, stage)
    finally:
        spec.unlink()

    for zone in ("deid", "curated", "shards"):
        small, default = zone_digests(ctx.zones.root, zone), zone_digests(sample_run.zones.root, zone)
        assert small, f"{zone} is empty"
        changed = sorted(k for k in small.keys() | default.keys() if small.get(k) != default.get(k))
        assert not changed, f"{zone} differs: {changed}"
    # More documents than a batch, so the small-batch run made many calls.
    curated = sum(pq.ParquetFile(p).metadata.num_rows for p in ctx.zones.curated.rglob("*.parquet"))
    assert curated > 7 * 10

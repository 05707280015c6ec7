"""validate_shards on real shard builds: both shard modes, with and without a mixing weight, and corruptions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from test_shard import shard_context

from medcurate.core.context import RunContext, StageFailed
from pipelines.quality.stage import validate_shards
from pipelines.shard.stage import run

SEQ_LEN = 16
BUILDS = {
    "documents": {"shard": {"mode": "documents", "target_shard_bytes": 2000}},
    "documents-mixed": {"shard": {"mode": "documents", "target_shard_bytes": 2000, "mixing": {"pubmed": 2.0}}},
    "packed": {"seq_len": SEQ_LEN, "shard": {"mode": "packed", "target_shard_bytes": 2000}},
    "packed-mixed": {
        "seq_len": SEQ_LEN,
        "shard": {"mode": "packed", "target_shard_bytes": 2000, "mixing": {"pubmed": 2.0}},
    },
}


@pytest.fixture(scope="module")
def builds(ray_local, tmp_path_factory) -> dict[str, RunContext]:
    contexts = {}
    for name, overrides in BUILDS.items():
        ctx = shard_context(tmp_path_factory.mktemp(name), **overrides)
        run(ctx)
        contexts[name] = ctx
    return contexts


def _copy(ctx: RunContext, name: str, root: Path) -> RunContext:
    """A fresh context on the same curated zone with a copy of ``ctx``'s shards, to corrupt freely."""
    copy = shard_context(root, **BUILDS[name])
    shutil.copytree(ctx.zones.shards, copy.zones.shards, dirs_exist_ok=True)
    return copy


def _rewrite_first_row(ctx: RunContext, column: str, value: object) -> None:
    """Set ``column`` of the first row of the train split's first shard file, keeping the file's schema."""
    path = sorted((ctx.zones.shards / "train").glob("*.arrow"))[0]
    with pa.ipc.open_stream(path) as reader:
        table = reader.read_all()
    values = table.column(column).to_pylist()
    values[0] = value
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
    # Written beside and renamed over: the table read above may still map the old file's bytes.
    staged = path.with_name(f".{path.name}")
    with pa.ipc.new_stream(staged, table.schema) as writer:
        writer.write_table(table)
    staged.replace(path)


@pytest.mark.parametrize("name", list(BUILDS))
def test_real_shard_builds_pass(builds, name):
    ctx = builds[name]
    report = validate_shards(ctx)
    assert report.details["validations"][0]["success"] is True
    assert set(report.details["splits"]) <= set(ctx.spec.splits)
    if name.endswith("mixed"):
        # Mixing copies count as documents: pubmed's train documents are written twice.
        unmixed = validate_shards(builds[name.removesuffix("-mixed")])
        assert report.sources["pubmed"].output > unmixed.sources["pubmed"].output
        assert report.sources["notes"].output == unmixed.sources["notes"].output


def test_packed_row_with_broken_cu_seqlens_fails(builds, tmp_path):
    ctx = _copy(builds["packed-mixed"], "packed-mixed", tmp_path)
    path = sorted((ctx.zones.shards / "train").glob("*.arrow"))[0]
    with pa.ipc.open_stream(path) as reader:
        cu = reader.read_all().column("cu_seqlens")[0].as_py()
    _rewrite_first_row(ctx, "cu_seqlens", [1, *cu[1:-1], cu[-1] - 1])
    with pytest.raises(StageFailed) as failure:
        validate_shards(ctx)
    message = str(failure.value)
    assert "expect_column_values_to_be_in_set(cu_seqlens_valid)" in message
    assert "expect_column_pair_values_to_be_equal(cu_seqlens_end)" in message


def test_packed_segment_without_curated_parent_fails(builds, tmp_path):
    ctx = _copy(builds["packed"], "packed", tmp_path)
    path = sorted((ctx.zones.shards / "train").glob("*.arrow"))[0]
    with pa.ipc.open_stream(path) as reader:
        doc_ids = reader.read_all().column("doc_ids")[0].as_py()
    _rewrite_first_row(ctx, "doc_ids", ["f" * 32, *doc_ids[1:]])
    with pytest.raises(StageFailed, match=r"has_curated_parent"):
        validate_shards(ctx)


def test_documents_copy_written_twice_fails(builds, tmp_path):
    ctx = _copy(builds["documents-mixed"], "documents-mixed", tmp_path)
    path = sorted((ctx.zones.shards / "train").glob("*.arrow"))[0]
    with pa.ipc.open_stream(path) as reader:
        table = reader.read_all()
    second = table.column("doc_id")[1].as_py()
    _rewrite_first_row(ctx, "doc_id", second)
    _rewrite_first_row(ctx, "repeat", table.column("repeat")[1].as_py())
    with pytest.raises(StageFailed, match=r"expect_compound_columns_to_be_unique"):
        validate_shards(ctx)


def _verdict(ctx: RunContext) -> str:
    try:
        report = validate_shards(ctx)
    except StageFailed as failure:
        return str(failure)
    return repr((report.details["validations"], report.details["splits"], report.sources))


@pytest.mark.parametrize("name", ["documents-mixed", "packed-mixed"])
def test_verdicts_do_not_depend_on_how_the_segments_are_partitioned(builds, tmp_path, monkeypatch, name):
    """Great Expectations validates the segments in partitions by doc_id, and the per-document facts (a piece
    starting where its copy's previous one ended, the splits of a document) are computed per partition."""
    ctx = _copy(builds[name], name, tmp_path)
    if name.startswith("packed"):  # a piece that no longer starts where its copy's previous piece ended
        path = sorted((ctx.zones.shards / "train").glob("*.arrow"))[0]
        with pa.ipc.open_stream(path) as reader:
            starts = reader.read_all().column("doc_token_starts")[0].as_py()
        _rewrite_first_row(ctx, "doc_token_starts", [starts[0] + 1, *starts[1:]])
    else:  # a copy written twice
        path = sorted((ctx.zones.shards / "train").glob("*.arrow"))[0]
        with pa.ipc.open_stream(path) as reader:
            table = reader.read_all()
        _rewrite_first_row(ctx, "doc_id", table.column("doc_id")[1].as_py())
        _rewrite_first_row(ctx, "repeat", table.column("repeat")[1].as_py())
    whole = _verdict(ctx)
    monkeypatch.setattr("pipelines.quality.frame_partitions.ROWS_PER_PARTITION", 3)
    assert _verdict(ctx) == whole
    assert "starts_where_previous_ended" in whole or "expect_compound_columns_to_be_unique" in whole
    for build in ("documents", "packed"):  # and the clean builds still pass
        assert _verdict(builds[build]).startswith("([{'suite': 'shards'")

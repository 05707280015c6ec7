from pathlib import Path

import pytest

from medcurate.core.spec import SpecError, load_spec, parse_spec

MINIMAL = {"sources": [{"name": "n", "kind": "notes_csv", "paths": "x/*.csv", "license": "l", "legal_basis": "waiver"}]}


def test_minimal_spec_gets_defaults(tmp_path: Path):
    spec = parse_spec(MINIMAL, tmp_path)
    assert spec.sources[0].paths == ("x/*.csv",)
    assert spec.splits == {"train": 0.9, "validation": 0.05, "test": 0.05}
    assert spec.tokenizer.path is None and spec.tokenizer.vocab_size > 0
    assert spec.shard.mode == "documents" and spec.seq_len == 2048
    assert spec.resolve("data") == (tmp_path / "data").resolve()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sources": []}, "non-empty"),
        ({"sources": [{**MINIMAL["sources"][0], "kind": "pdf"}]}, "kind 'pdf'"),
        ({"sources": [{**MINIMAL["sources"][0], "legal_basis": "because"}]}, "legal_basis"),
        ({"sources": [{k: v for k, v in MINIMAL["sources"][0].items() if k != "license"}]}, "license"),
        ({"sources": MINIMAL["sources"] * 2}, "unique"),
        ({"splits": {"train": 0.5, "test": 0.2}}, "sum to 1"),
        ({"shard": {"mode": "zip"}}, "shard.mode"),
        ({"tokenizer": {"vocab": 10}}, "unknown key"),
        ({"colour": "blue"}, "unknown top-level"),
    ],
)
def test_invalid_specs_fail_with_a_clear_message(tmp_path: Path, change: dict, message: str):
    with pytest.raises(SpecError, match=message):
        parse_spec({**MINIMAL, **change}, tmp_path)


def test_source_files_are_sorted_and_resolved_against_the_spec_dir(tmp_path: Path):
    (tmp_path / "x").mkdir()
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / "x" / name).write_text("")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "sources:\n  - {name: n, kind: notes_csv, paths: ['x/*.csv'], license: l, legal_basis: waiver}\n"
    )
    spec = load_spec(spec_file)
    assert [p.name for p in spec.sources[0].files(spec.base_dir)] == ["a.csv", "b.csv"]


def test_config_hash_ignores_location_but_not_content(tmp_path: Path):
    a = parse_spec(MINIMAL, tmp_path / "a")
    b = parse_spec(MINIMAL, tmp_path / "b")
    c = parse_spec({**MINIMAL, "seq_len": 1024}, tmp_path)
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_missing_or_broken_spec_file(tmp_path: Path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)

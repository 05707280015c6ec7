from pathlib import Path

import pytest

from medcurate.core.listing import list_inputs
from medcurate.core.names import LEGAL_BASES, SOURCE_KINDS
from medcurate.core.spec import SOURCE_NAME_PATTERN, SpecError, load_spec, parse_spec, spec_json_schema

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
        ({"sources": [{**MINIMAL["sources"][0], "kind": "pdf"}]}, "^source 'n'.kind: 'pdf' is not one of 'fhir'"),
        ({"sources": [{**MINIMAL["sources"][0], "legal_basis": "because"}]}, "legal_basis"),
        ({"sources": [{k: v for k, v in MINIMAL["sources"][0].items() if k != "license"}]}, "license"),
        ({"sources": MINIMAL["sources"] * 2}, "unique"),
        ({"splits": {"train": 0.5, "test": 0.2}}, "sum to 1"),
        ({"shard": {"mode": "zip"}}, "^shard.mode: 'zip' is not one of"),
        ({"seq_len": "long"}, "^seq_len: input should be a valid integer.*got 'long'$"),
        ({"quality": {"min_chars": [1]}}, "^quality.min_chars: input should be a valid integer"),
        ({"tokenizer": "big"}, "^tokenizer: input should be a valid dictionary"),
        ({"sources": [{**MINIMAL["sources"][0], "paths": 3}]}, "^source 'n'.paths: input should be a valid tuple"),
        ({"shard": {"mixing": {"n": 1.0, "pubmd": 2.0}}}, r"shard.mixing names unknown source\(s\) \['pubmd'\]"),
        ({"shard": {"mixing": {"n": -1}}}, "shard.mixing: weights must be finite and >= 0"),
        ({"tokenizer": {"vocab": 10}}, "^tokenizer: unknown key 'vocab'$"),
        ({"colour": "blue"}, "^top-level: unknown key 'colour'$"),
        ({"base_dir": "/"}, "^top-level: unknown key 'base_dir'$"),
    ],
)
def test_invalid_specs_fail_with_a_clear_message(tmp_path: Path, change: dict, message: str):
    with pytest.raises(SpecError, match=message) as caught:
        parse_spec({**MINIMAL, **change}, tmp_path)
    assert "\n" not in str(caught.value)


def test_source_files_are_sorted_and_resolved_against_the_spec_dir(tmp_path: Path):
    (tmp_path / "x").mkdir()
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / "x" / name).write_text("")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "sources:\n  - {name: n, kind: notes_csv, paths: ['x/*.csv'], license: l, legal_basis: waiver}\n"
    )
    spec = load_spec(spec_file)
    assert [p.name for p in list_inputs(spec.sources[0], spec.base_dir).files] == ["a.csv", "b.csv"]


def _source(**change) -> dict:
    return {"sources": [{**MINIMAL["sources"][0], **change}]}


@pytest.mark.parametrize(
    "name", ["../../escaped_phi", "a/b", ".hidden", "a..b", "x" * 65, "name\nWARNING fake", "", "-dash"]
)
def test_source_names_must_be_plain_identifiers(tmp_path: Path, name: str):
    with pytest.raises(SpecError, match="source|sources\\[0\\]") as caught:
        parse_spec(_source(name=name), tmp_path)
    assert "\n" not in str(caught.value)  # one line, whatever the name holds


@pytest.mark.parametrize("name", ["notes", "ehr_fhir", "MIMIC-IV.note", "a" * 64, "0"])
def test_plain_source_names_are_accepted(tmp_path: Path, name: str):
    assert parse_spec(_source(name=name), tmp_path).sources[0].name == name


@pytest.mark.parametrize("pattern", ["../../../etc/*", "/etc/*", "x/../../*.csv", "x/*/../../../y", "/"])
def test_globs_reaching_outside_the_spec_folder_are_refused(tmp_path: Path, pattern: str):
    with pytest.raises(SpecError, match="reaches outside the spec's folder; set allow_outside"):
        parse_spec(_source(paths=[pattern]), tmp_path / "spec")
    spec = parse_spec(_source(paths=[pattern], allow_outside=True), tmp_path / "spec")
    assert spec.sources[0].allow_outside is True


@pytest.mark.parametrize("pattern", ["x/*.csv", "x/../y/*.csv", "**/*.csv", "SPEC/x/*.csv"])
def test_globs_inside_the_spec_folder_are_accepted(tmp_path: Path, pattern: str):
    folder = tmp_path / "spec"
    parse_spec(_source(paths=[pattern.replace("SPEC", str(folder))]), folder)


def test_allow_outside_must_be_a_boolean(tmp_path: Path):
    with pytest.raises(SpecError, match="^source 'n'.allow_outside: input should be a valid boolean, got 'yes'$"):
        parse_spec(_source(allow_outside="yes"), tmp_path)


def test_config_hash_ignores_location_but_not_content(tmp_path: Path):
    a = parse_spec(MINIMAL, tmp_path / "a")
    b = parse_spec(MINIMAL, tmp_path / "b")
    c = parse_spec({**MINIMAL, "seq_len": 1024}, tmp_path)
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_missing_or_broken_spec_file(tmp_path: Path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources:\n  - {name: n, kind: [fhir}\n")
    with pytest.raises(SpecError, match=r"bad.yaml: not valid YAML at line 3, column \d+: "):
        load_spec(bad)


def test_a_wrong_type_on_the_command_line_is_one_line_naming_the_key_and_exits_2(tmp_path: Path, capsys):
    from medcurate.cli import EXIT_USAGE, main

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "seq_len: many\nsources:\n  - {name: n, kind: notes_csv, paths: x, license: l, legal_basis: waiver}\n"
    )
    assert main(["run", str(spec), "--data-root", str(tmp_path / "data")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: seq_len: input should be a valid integer"), err
    assert not (tmp_path / "data").exists()


def test_optional_defaults_to_false_and_is_strict(tmp_path: Path):
    assert parse_spec(MINIMAL, tmp_path).sources[0].optional is False
    assert parse_spec(_source(optional=True), tmp_path).sources[0].optional is True
    with pytest.raises(SpecError, match="optional"):
        parse_spec(_source(optional="sometimes"), tmp_path)


def test_the_json_schema_states_the_models_rules():
    schema = spec_json_schema()
    assert schema["required"] == ["sources"] and schema["additionalProperties"] is False
    assert "base_dir" not in schema["properties"]
    source = schema["$defs"]["SourceSpec"]
    assert source["properties"]["kind"]["enum"] == list(SOURCE_KINDS)
    assert source["properties"]["legal_basis"]["enum"] == list(LEGAL_BASES)
    assert source["properties"]["name"]["pattern"] == SOURCE_NAME_PATTERN
    assert schema["$defs"]["ShardSpec"]["properties"]["mode"]["enum"] == ["documents", "packed"]

"""A trainer's path with their own tools: datasets, transformers, mlcroissant, the dataset card, Megatron export."""

from __future__ import annotations

import json
import socket
from dataclasses import replace

import datasets
import mlcroissant
import pytest
import transformers
import yaml
from test_shard import SPLITS, TEXT_BY_DOC, shard_context

from medcurate.cli import main
from pipelines.shard.stage import run
from pipelines.shard.trainer_files import split_warnings

# A run id in the pipeline's format, so the Croissant file gets its datePublished from it.
RUN_ID = "20261206T120000Z-abc123"


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    ctx = replace(shard_context(tmp_path_factory.mktemp("trainer")), run_id=RUN_ID)
    run(ctx)
    return ctx.zones.shards


@pytest.fixture(scope="module")
def manifest(shards) -> dict:
    return json.loads((shards / "manifest.json").read_text())


def test_load_from_disk_of_the_shards_folder_is_a_dataset_dict(shards, manifest):
    loaded = datasets.load_from_disk(str(shards))
    assert isinstance(loaded, datasets.DatasetDict)
    assert list(loaded) == list(SPLITS)  # spec order, not the manifest's sorted keys
    for split, dataset in loaded.items():
        assert dataset.num_rows == manifest["totals"]["by_split"][split]["rows"]
        assert set(dataset["split"]) == {split}
        assert "notes: synthetic (waiver)" in dataset.info.license
        assert dataset.info.citation.startswith("@misc{medical_corpus,")


def test_manifest_lists_each_sources_licence_and_legal_basis(manifest):
    assert manifest["sources"]["pubmed"] == {
        "kind": "pubmed",
        "license": "synthetic",
        "legal_basis": "waiver",
        "owner": "unknown",
    }
    assert set(manifest["sources"]) == {"notes", "ehr_fhir", "pubmed"}


def test_auto_tokenizer_encodes_like_the_shard_stage(shards, manifest):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(shards / "tokenizer"))
    ids = manifest["tokenizer"]
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        ids["bos_id"],
        ids["eos_id"],
        ids["pad_id"],
    )
    assert None not in (ids["bos_id"], ids["eos_id"], ids["pad_id"])
    train = datasets.load_from_disk(str(shards / "train"))
    for row in train.select(range(5)):
        text = TEXT_BY_DOC[row["doc_id"]]
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert row["input_ids"] == [ids["bos_id"], *encoded, ids["eos_id"]]
        assert tokenizer.decode(encoded) == text


def test_croissant_validates_offline_and_its_records_read(shards, manifest, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mlcroissant tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    dataset = mlcroissant.Dataset(jsonld=str(shards / "croissant.json"))
    issues = dataset.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, (issues.errors, issues.warnings)
    records = list(dataset.records("splits"))
    read = {r["splits/name"]: r["splits/documents"] for r in records}
    assert read == {split: totals["documents"] for split, totals in manifest["totals"]["by_split"].items()}
    croissant = json.loads((shards / "croissant.json").read_text())
    for key in ("rai:dataCollection", "rai:personalSensitiveInformation", "rai:dataPreprocessingProtocol"):
        assert croissant[key]
    assert croissant["datePublished"] == "2026-12-06"
    file_sets = [(d["@id"], d["includes"]) for d in croissant["distribution"] if d["@type"] == "cr:FileSet"]
    assert file_sets == [(f"{split}-files", f"{split}/data-*.arrow") for split in SPLITS]
    train_fields = next(r for r in croissant["recordSet"] if r["@id"] == "train")["field"]
    columns = {f["name"]: (f["dataType"], f.get("repeated", False)) for f in train_fields}
    assert columns["input_ids"] == ("sc:Integer", True)
    assert columns["doc_id"] == ("sc:Text", False)
    assert set(columns) == set(datasets.load_from_disk(str(shards / "train")).column_names)


def test_dataset_card_has_the_hub_header_and_the_datasheet(shards, manifest):
    text = (shards / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    card = yaml.safe_load(header)
    assert card["license"] == "other"  # "synthetic" is no Hub licence identifier: the body lists each one
    assert card["language"] == ["en"] and card["task_categories"] == ["text-generation"]
    assert card["size_categories"] == ["n<1K"] and card["source_datasets"] == ["original"]
    assert card["pretty_name"] == "medical-corpus"
    data_files = [{"split": split, "path": f"{split}/data-*.arrow"} for split in SPLITS]
    assert card["configs"] == [{"config_name": "default", "data_files": data_files}]
    for heading in (
        "## Sources",
        "## What was removed and why",
        "## De-identification",
        "## Intended uses",
        "## Out-of-scope uses",
        "## PHI policy",
    ):
        assert heading in body
    assert "| pubmed | pubmed | synthetic | waiver | unknown |" in body
    # Removals come from the stage reports: this shard build dropped the empty note.
    assert "| shard | empty_after_tokenization | 1 |" in body
    # No measured de-identification figure is invented: the card points to where they are kept.
    assert "see `docs/deidentification.md`" in body
    assert manifest["merkle"]["root"] in body


def test_a_split_without_clinical_documents_is_warned_about(shards, manifest):
    ctx = shard_context(shards.parent.parent / "spec-only")
    assert split_warnings(ctx.spec, manifest) == []
    literature_only = json.loads(json.dumps(manifest))
    test_shards = [shard for shard in literature_only["shards"] if shard["split"] == "test"]
    for shard in test_shards:
        shard["documents_by_source"] = {}
    test_shards[0]["documents_by_source"] = {"pubmed": 2}
    assert split_warnings(ctx.spec, literature_only) == [
        "split 'test' holds no clinical patient (2 documents, all from literature sources)"
    ]


def test_export_megatron_given_the_shards_folder_names_the_splits(shards, tmp_path, capsys):
    assert main(["export-megatron", str(shards), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds the splits test, train, validation: name one" in err
    assert not list(tmp_path.iterdir())

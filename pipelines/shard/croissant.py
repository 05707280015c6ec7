"""``shards/croissant.json``: MLCommons Croissant 1.0 metadata with the Responsible-AI (RAI) extension.

Croissant lets dataset tools discover what the shards hold without reading them: one ``cr:FileSet`` per split
(its Arrow stream files), one ``cr:RecordSet`` per split whose fields are the split's columns (typed from the
written Arrow schema), a ``splits`` RecordSet (``cr:Split``, inline data) that each row's ``split`` column
references, and the RAI fields that fit a de-identified medical corpus (collection, preprocessing, personal
and sensitive information, uses, limitations).  The ``@context`` is inline, so reading the file never needs
the network.  Per-file digests are in ``manifest.json``; the FileSets name files by pattern, so an erasure
that rewrites shards leaves this file true.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from medcurate.core.spec import CorpusSpec
from pipelines.shard.hf_layout import split_schema

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
# The IANA media type of the Arrow IPC stream format (what ``datasets`` memory-maps).
ARROW_STREAM = "application/vnd.apache.arrow.stream"

CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}


def run_date(run_id: str) -> str | None:
    """The ISO date a pipeline run id (``YYYYmmddTHHMMSSZ-xxxxxx``) starts with; None for other run ids.

    Taken from the run id, not the clock, so a rebuild with the same run id writes the same bytes.
    """
    try:
        return datetime.strptime(run_id[:16], "%Y%m%dT%H%M%SZ").date().isoformat()
    except ValueError:
        return None


def data_type(arrow_type: pa.DataType) -> tuple[str, bool]:
    """The Croissant data type of an Arrow column, and whether it is a list (``repeated``)."""
    if pa.types.is_list(arrow_type):
        return data_type(arrow_type.value_type)[0], True
    if pa.types.is_integer(arrow_type):
        return "sc:Integer", False
    if pa.types.is_floating(arrow_type):
        return "sc:Float", False
    if pa.types.is_boolean(arrow_type):
        return "sc:Boolean", False
    return "sc:Text", False


def _field(record_set: str, column: pa.Field, file_set: str, descriptions: dict[str, str]) -> dict[str, Any]:
    kind, repeated = data_type(column.type)
    field: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{column.name}",
        "name": column.name,
        "description": descriptions[column.name],
        "dataType": kind,
        "source": {"fileSet": {"@id": file_set}, "extract": {"column": column.name}},
    }
    if repeated:
        field["repeated"] = True
    if column.name == "split":
        field["references"] = {"field": {"@id": "splits/name"}}
    return field


def _splits_record_set(manifest: dict[str, Any]) -> dict[str, Any]:
    by_split = manifest["totals"]["by_split"]
    return {
        "@type": "cr:RecordSet",
        "@id": "splits",
        "name": "splits",
        "description": "The splits; a patient or an article is in one split only.",
        "dataType": "cr:Split",
        "key": {"@id": "splits/name"},
        "field": [
            {"@type": "cr:Field", "@id": "splits/name", "name": "name", "dataType": "sc:Text"},
            {"@type": "cr:Field", "@id": "splits/documents", "name": "documents", "dataType": "sc:Integer"},
        ],
        "data": [
            {"splits/name": split, "splits/documents": by_split.get(split, {}).get("documents", 0)}
            for split in manifest["splits"]
        ],
    }


def build_croissant(
    spec: CorpusSpec,
    manifest: dict[str, Any],
    root: Path,
    settings: dict[str, Any],
    license: str,
    citation: str,
) -> dict[str, Any]:
    """The Croissant JSON-LD document for the shard set under ``root`` described by ``manifest``."""
    distribution: list[dict[str, Any]] = [
        {
            "@type": "cr:FileObject",
            "@id": "tokenizer",
            "name": "tokenizer",
            "description": "The tokenizer the token ids were made with (Hugging Face tokenizers format).",
            "contentUrl": manifest["tokenizer"]["path"],
            "encodingFormat": "application/json",
            "sha256": manifest["tokenizer"]["sha256"],
        }
    ]
    record_sets = [_splits_record_set(manifest)]
    for split in manifest["splits"]:
        file_set = f"{split}-files"
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": file_set,
                "name": file_set,
                "description": f"The {split} split's shards (Arrow IPC stream files, datasets save_to_disk layout).",
                "encodingFormat": ARROW_STREAM,
                "includes": f"{split}/data-*.arrow",
            }
        )
        record_sets.append(
            {
                "@type": "cr:RecordSet",
                "@id": split,
                "name": split,
                "description": f"Rows of the {split} split (mode {manifest['mode']}).",
                "field": [
                    _field(split, column, file_set, settings["columns"]) for column in split_schema(root / split)
                ],
            }
        )
    sources = "; ".join(f"{s.name} ({s.kind})" for s in sorted(spec.sources, key=lambda s: s.name))
    published = run_date(manifest["run_id"])
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": spec.name,
        "description": settings["summary"],
        "conformsTo": CONFORMS_TO,
        "license": license,
        "citeAs": citation,
        "version": "1.0.0",
        **({"datePublished": published} if published else {}),
        "url": "manifest.json",
        "keywords": ["medical", "clinical", "de-identified", "language modeling"],
        "inLanguage": settings["language"],
        "isAccessibleForFree": False,
        "rai:dataCollection": f"{settings['data_collection']} Sources: {sources}.",
        "rai:dataCollectionType": "Secondary use of existing records and publications",
        "rai:dataPreprocessingProtocol": settings["preprocessing"],
        "rai:personalSensitiveInformation": f"{settings['deid_method']} {settings['phi_policy']}",
        "rai:dataUseCases": " ".join(settings["intended_uses"]),
        "rai:dataLimitations": settings["limitations"],
        "rai:dataSocialImpact": "Out of scope: " + " ".join(settings["out_of_scope_uses"]),
        "distribution": distribution,
        "recordSet": record_sets,
    }

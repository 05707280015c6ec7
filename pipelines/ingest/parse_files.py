"""Parsing one input file into one raw part: the per-file work of ingest, on Ray actors or in the driver.

``ParseFiles`` hashes a file, parses it and writes its part (under a temporary name until the whole file has
parsed); it returns what the driver must account for, in the order the parser met it: the documents' ids and
the source's deletions (whose order settles supersession), the rejected records, the policy skips, or why the
whole file failed.  The driver does everything that spans files or touches the run's records: file ids (a
keyed hash of the path: the key never leaves the driver), quarantine records and copies, counts, logs.

A kind whose parser needs the whole source (``Parser.whole_source``: FHIR timelines, DICOM studies) keeps one
parser in the driver for every file, so its ``finalize`` sees them all.  The others run on one actor per CPU
of the run's own local Ray (``stage._parsed`` decides; never on a cluster named by ``RAY_ADDRESS``, whose nodes
need not see the input files); files come back in listing order, so parts, ids and supersession are the same
whatever the number of actors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from medcurate.core.hashing import sha256_file
from medcurate.core.log_text import describe_exception
from medcurate.core.schema import RAW_DOCUMENT_SCHEMA, Document, Provenance, documents_to_table, make_doc_id
from medcurate.core.zones import RowGroupWriter, Zones, temporary_path
from pipelines.ingest.base import BadInput, Deletion, Parser, RejectedRecord, Skipped

ROW_GROUP_DOCS = 2000
# What a file can raise when it, or a directory above it, disappears after it was listed.
VANISHING = (FileNotFoundError, NotADirectoryError)
# How a file ended.
INGESTED, BAD_INPUT, VANISHED, PARSER_ERROR = "ingested", "bad_input", "vanished", "parser_error"


@dataclass(frozen=True)
class FileJob:
    path: Path
    file_id: str  # what records and logs name the file by: its path is PHI
    part: Path


@dataclass
class ParsedFile:
    """One file's outcome, for the driver to account for."""

    outcome: str
    size: int | None = None
    sha256: str | None = None
    # ("add", doc_id) per document written, ("delete", doc_id) per deletion, in parse order.
    items: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[RejectedRecord] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    reason: str | None = None  # BadInput's reason code
    detail: str = ""  # BadInput's detail, or the parser error's exception type
    error: str = ""  # a parser error described for the log (medcurate.core.log_text: no PHI)

    @property
    def documents(self) -> int:
        return sum(1 for kind, _ in self.items if kind == "add")


class ParseFiles:
    """Actor body: ``FileJob`` -> ``ParsedFile``, with one parser of the source's kind for every file it gets."""

    def __init__(self, parser: Parser, zones: Zones, provenance: Provenance) -> None:
        self.parser = parser
        self.zones = zones
        self.provenance = provenance  # the source's; each file's id and sha256 are filled in

    def parse(self, job: FileJob) -> ParsedFile:
        try:
            size = job.path.stat().st_size
            sha = sha256_file(job.path)
        except VANISHING:
            return ParsedFile(VANISHED)
        result = ParsedFile(INGESTED, size=size, sha256=sha)
        provenance = Provenance(
            **{**vars(self.provenance), "source_file": job.file_id, "source_sha256": sha},
        )
        to_table = partial(documents_to_table, provenance=provenance)
        writer = RowGroupWriter(job.part, RAW_DOCUMENT_SCHEMA, ROW_GROUP_DOCS, to_table=to_table, zones=self.zones)
        source = self.provenance.source
        try:
            for item in self.parser.parse_file(job.path):
                if isinstance(item, Document):
                    writer.add(item)
                    result.items.append(("add", make_doc_id(source, item.natural_key)))
                elif isinstance(item, RejectedRecord):
                    result.rejected.append(item)
                elif isinstance(item, Deletion):
                    result.items.append(("delete", make_doc_id(source, item.natural_key)))
                elif isinstance(item, Skipped):
                    result.skipped[item.reason] += 1
        except VANISHING:
            writer.abort()
            return ParsedFile(VANISHED, size=size, sha256=sha)
        except BadInput as exc:
            writer.abort()
            return ParsedFile(BAD_INPUT, size=size, sha256=sha, reason=exc.reason, detail=exc.detail)
        except Exception as exc:  # a parser bug must not take the whole run down, nor pass silently
            writer.abort()
            error = describe_exception(exc)
            return ParsedFile(PARSER_ERROR, size=size, sha256=sha, detail=type(exc).__name__, error=error)
        if writer.rows:
            writer.commit()
        else:
            writer.abort()  # a file that yields no document leaves no part
        return result


def worker_died(job: FileJob) -> ParsedFile:
    """The outcome of a file whose actor died parsing it (a crash in native code, the kernel killing it for its
    memory): a parser error, quarantined like one, and its half-written part removed.  Hashed here, in the
    driver, since the actor never said."""
    temporary_path(job.part).unlink(missing_ok=True)
    try:
        size, sha = job.path.stat().st_size, sha256_file(job.path)
    except VANISHING:
        return ParsedFile(VANISHED)
    error = "the worker process parsing it died (a crash in native code, or killed for its memory)"
    return ParsedFile(PARSER_ERROR, size=size, sha256=sha, detail="WorkerDied", error=error)

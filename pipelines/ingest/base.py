"""The contract between the ingest stage and a parser of one source kind.

A parser is a small class, instantiated once per source with that source's ``options``.  The stage feeds it
the source's files one by one; the parser yields what it found in each file:

* ``Document``: a record for the raw zone (the stage stamps provenance: source, file id, sha256, licence, ...);
* ``RejectedRecord``: one bad record inside an otherwise readable file (an invalid NDJSON line, an HL7
  message without PID); the rest of the file goes on;
* ``Deletion``: a source-level instruction to remove an earlier record (PubMed ``DeleteCitation``);
* ``Skipped``: a sound record that a documented policy leaves out (FHIR billing), counted by reason.

A file that cannot be read at all (truncated gzip, malformed XML, not UTF-8, empty, past a cap of
``limits.yaml``) raises ``BadInput``; the stage quarantines the whole file and goes on with the next one.
Documents already yielded from that file are discarded with it, so a half-parsed file never leaks half its
records.

After the last file, ``finalize`` may yield documents that need the whole source (FHIR patient timelines
built from resources spread over many NDJSON files, DICOM study summaries).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcurate.core.quarantine import Rejected
from medcurate.core.schema import Document
from pipelines.ingest.limits import Limits


class BadInput(Rejected):
    """The whole file is unusable."""


@dataclass(frozen=True)
class RejectedRecord:
    position: str
    record_index: int
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Deletion:
    natural_key: str


@dataclass(frozen=True)
class Skipped:
    """A record that a documented policy leaves out (FHIR billing resources): counted in the stage report
    under ``reason``, neither ingested nor quarantined, because nothing is wrong with it."""

    reason: str


ParsedItem = Document | RejectedRecord | Deletion | Skipped


class Parser:
    """Base class: subclasses implement ``parse_file`` and, when they need the whole source, ``finalize``.

    The ``limits`` option (caps on bytes and nesting, ``pipelines/ingest/limits.yaml``) is common to every
    kind; it is taken out of ``options`` here, so a subclass sees only its own options.
    """

    kind: str = ""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.limits = Limits.from_options(self.options.pop("limits", None))

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        raise NotImplementedError

    def finalize(self) -> Iterator[tuple[Path, Document]]:
        """Source-level documents, each with the input file it is attributed to.  Default: none."""
        return iter(())

    @property
    def whole_source(self) -> bool:
        """Whether this parser must see every file of its source (it has a ``finalize``): then one parser
        reads them all, in the driver, instead of one per Ray actor (pipelines/ingest/parse_files.py)."""
        return type(self).finalize is not Parser.finalize

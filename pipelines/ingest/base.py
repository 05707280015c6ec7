"""The contract between the ingest stage and a parser of one source kind.

A parser is a small class, instantiated once per source with that source's ``options``.  The stage feeds it
the source's files one by one; the parser yields what it found in each file:

* ``Document``: a record for the raw zone (the stage stamps provenance: source, file id, sha256, licence, ...);
* ``RejectedRecord``: one bad record inside an otherwise readable file (an invalid NDJSON line, an HL7
  message without PID); the rest of the file goes on;
* ``Deletion``: a source-level instruction to remove an earlier record (PubMed ``DeleteCitation``).

A file that cannot be read at all (truncated gzip, malformed XML, not UTF-8, empty) raises ``BadInput``;
the stage quarantines the whole file and goes on with the next one.  Documents already yielded from that
file are discarded with it, so a half-parsed file never leaks half its records.

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


ParsedItem = Document | RejectedRecord | Deletion


class Parser:
    """Base class: subclasses implement ``parse_file`` and, when they need the whole source, ``finalize``."""

    kind: str = ""

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        raise NotImplementedError

    def finalize(self) -> Iterator[tuple[Path, Document]]:
        """Source-level documents, each with the input file it is attributed to.  Default: none."""
        return iter(())

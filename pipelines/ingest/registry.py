"""Source kind -> parser class.  Adding a kind means writing one parser module and one line here."""

from __future__ import annotations

from pipelines.ingest.base import Parser
from pipelines.ingest.dicom import DicomParser
from pipelines.ingest.fhir import FhirParser
from pipelines.ingest.hl7v2 import Hl7v2Parser
from pipelines.ingest.notes_csv import NotesCsvParser
from pipelines.ingest.pmc import PmcParser
from pipelines.ingest.pubmed import PubmedParser

PARSERS: dict[str, type[Parser]] = {
    "fhir": FhirParser,
    "notes_csv": NotesCsvParser,
    "hl7v2": Hl7v2Parser,
    "dicom": DicomParser,
    "pubmed": PubmedParser,
    "pmc": PmcParser,
}

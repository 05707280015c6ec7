"""The names of the pipeline's stages, of the source kinds it reads and of the zones stages publish.

One small module that needs neither pyarrow nor Airflow, so that the DAG files (parsed often, where pyarrow alone
costs most of a second), the CLI's argument parser, the schema, the runner and the report all spell them from
the same place.
"""

from __future__ import annotations

# In run order; ``medcurate.runner.STAGES`` gives each its function and purpose.
STAGE_NAMES = ("ingest", "validate_raw", "deid", "curate", "shard", "validate_shards", "catalog", "report")
SOURCE_KINDS = ("fhir", "notes_csv", "hl7v2", "dicom", "pubmed", "pmc")
# Why a source may be used at all; every document carries its source's (``medcurate.core.schema``).
LEGAL_BASES = ("consent", "waiver", "public-domain", "open-license", "data-use-agreement", "limited-data-set")
# Stage -> the zone it publishes (read-only once published: ``medcurate.core.sealing``).
PUBLISHING_STAGES = {"curate": "curated", "shard": "shards"}

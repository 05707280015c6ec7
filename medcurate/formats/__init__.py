"""Codecs of the input formats that more than one stage needs: DICOM JSON, the FHIR timeline, HL7 v2 messages and
dates written in text.

Ingest renders a record with them and the deid stage renders it again from the de-identified payload, so both
stages import them from here rather than from each other.  They import only the core.
"""

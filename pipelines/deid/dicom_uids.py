"""Consistent UID replacement (Annex E action U).

A UID names a study, series, instance or frame of reference; the hospital's UID root and the embedded
timestamps and counters can identify where and when a patient was imaged. The replacement must keep every
reference intact (an instance's ``ReferencedSOPInstanceUID`` must still point at the new ``SOPInstanceUID``),
so it is a keyed function of the original: HMAC(key, uid) read as a 128-bit integer under the ``2.25`` root
(PS3.5 B.2, UUID-derived UIDs). The same key maps the same UID to the same new UID in every file and every
run; without the key the mapping cannot be reversed or recomputed.

UIDs from the DICOM registry (SOP classes, transfer syntaxes, coding schemes, well-known frames of reference)
name no patient and are kept.
"""

from __future__ import annotations

from pydicom.uid import UID_dictionary

from medcurate.core.keys import keyed_hash

UID_NAMESPACE = "dicom-uid"


def is_registered_uid(uid: str) -> bool:
    return uid in UID_dictionary


def remap_uid(key: bytes, uid: str) -> str:
    """The replacement UID: ``2.25.<decimal of the first 128 bits of HMAC(key, uid)>`` (at most 44 chars)."""
    return "2.25." + str(int(keyed_hash(key, UID_NAMESPACE, uid.strip())[:32], 16))

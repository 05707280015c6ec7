"""The pseudonymization key: where it comes from, and the one place it is turned into pseudonyms.

The key is read from the environment (``MEDCURATE_PSEUDONYM_KEY``) or, inside Airflow, from a Variable of the
same name, which Airflow resolves through its configured secrets backend.  It is never written to the repo,
to a log, a report or an output.  Only the demo (``medcurate run`` on the bundled sample) may run without
one: it generates a throwaway key, says so, and keeps it in the raw zone (owner-only, beside the PHI it
protects) so that every stage of the demo run, in whatever process, pseudonymizes the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from medcurate.core.zones import make_private_dir

log = logging.getLogger(__name__)

KEY_ENV = "MEDCURATE_PSEUDONYM_KEY"
MIN_KEY_LENGTH = 16


class MissingKeyError(RuntimeError):
    pass


def load_key(*, value: str | None = None, demo_key_file: Path | None = None) -> bytes:
    """``value`` (e.g. an Airflow Variable), else the environment; for the demo only (``demo_key_file``
    given), a throwaway one.  A value handed in is never copied into the environment, which child
    processes (Ray workers) would inherit."""
    value = value or os.environ.get(KEY_ENV)
    if value:
        if len(value) < MIN_KEY_LENGTH:
            raise MissingKeyError(f"{KEY_ENV} is too short: use at least {MIN_KEY_LENGTH} random characters")
        return value.encode()
    if demo_key_file is not None:
        if not demo_key_file.exists():
            log.warning("no %s set: this demo run uses a throwaway key; do not use its output", KEY_ENV)
            make_private_dir(demo_key_file.parent)
            fd = os.open(demo_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return demo_key_file.read_text().strip().encode()
    raise MissingKeyError(
        f"no pseudonymization key: set {KEY_ENV} (or the Airflow Variable {KEY_ENV}) to a secret of at least "
        f"{MIN_KEY_LENGTH} characters; a production run refuses to start without one"
    )


def keyed_hash(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 of the parts: the basis of pseudonyms and per-patient date offsets."""
    return hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def pseudonym(key: bytes, patient_key: str, namespace: str = "patient") -> str:
    return "P" + keyed_hash(key, namespace, patient_key)[:20]


DATE_SHIFT_NAMESPACE = "date-shift"


def date_shift_days(key: bytes, patient_key: str, max_days: int) -> int:
    """Days to move one patient's dates back: 1..max_days, fixed by key and patient.

    The one formula for every modality (note text, structured records, DICOM headers), so a CT, the FHIR
    Observation and the note that discuss the same event all land on the same shifted day.
    """
    return 1 + int(keyed_hash(key, DATE_SHIFT_NAMESPACE, patient_key)[:12], 16) % max_days


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible fingerprint so audit records can tell which key was used without holding it."""
    return hashlib.sha256(b"medcurate-key-fingerprint\x00" + key).hexdigest()[:12]

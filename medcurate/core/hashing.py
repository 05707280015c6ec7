"""File and content hashes used for provenance (input files, shards, tokenizers), and the Merkle root.

The Merkle root that seals a shard set (RFC 6962, section 2.1, with SHA-256): the leaves are the raw 32-byte sha256
digests of the shard files, sorted by the shard's path relative to ``shards/``.

* MTH of no leaves = sha256(b"")
* MTH of one leaf d = sha256(0x00 || d)
* MTH of n > 1 leaves = sha256(0x01 || MTH(first k) || MTH(rest)), k the largest power of two below n

The 0x00/0x01 prefixes keep a leaf from ever being read as an inner node.  A trainer can check one shard
against the root with an audit path instead of re-hashing the whole set.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def merkle_root(sha256_by_path: dict[str, str]) -> str:
    """Hex Merkle root over hex sha256 digests, ordered by their (relative, POSIX) path."""
    return _mth([bytes.fromhex(sha256_by_path[p]) for p in sorted(sha256_by_path)]).hex()

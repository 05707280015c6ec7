"""Which files a source names: its globs, inside the spec's folder, symlinks checked.

A spec is written by people and its globs are matched on folders that other people fill, so the listing
trusts neither: a glob may only reach files inside the spec's folder (the spec loader refuses a pattern that
points elsewhere, ``medcurate.core.spec``), and a symlink is followed only when its target is inside that folder
too; a source with ``allow_outside: true`` lifts both rules.  What the listing refuses is not silently
skipped: a dangling symlink or one that leads outside is ``Refused`` with a reason, and the ingest stage
lists it in the quarantine.  Files are sorted, so that every run sees them in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medcurate.core.spec import SourceSpec

DANGLING_SYMLINK = "dangling_symlink"
OUTSIDE_SPEC_FOLDER = "outside_spec_folder"


@dataclass(frozen=True)
class Refused:
    path: Path
    reason: str
    detail: str


@dataclass(frozen=True)
class Listing:
    files: list[Path]
    refused: list[Refused]


def _matches(pattern: str, base_dir: Path) -> set[Path]:
    root = Path(pattern) if Path(pattern).is_absolute() else base_dir / pattern
    anchor = Path(root.anchor)
    return set(anchor.glob(str(root.relative_to(anchor))))


def list_inputs(source: SourceSpec, base_dir: Path) -> Listing:
    """The files of ``source`` to read, and the matches refused (dangling or outside symlinks)."""
    folder = base_dir.resolve()
    files: list[Path] = []
    refused: list[Refused] = []
    for path in sorted(set().union(*(_matches(p, base_dir) for p in source.paths))):
        if path.is_symlink() and not path.exists():
            refused.append(Refused(path, DANGLING_SYMLINK, "the symlink's target does not exist"))
        elif not path.is_file():
            continue  # a directory the glob also matched
        elif not source.allow_outside and not path.resolve().is_relative_to(folder):
            refused.append(Refused(path, OUTSIDE_SPEC_FOLDER, "a symlink to a file outside the spec's folder"))
        else:
            files.append(path)
    return Listing(files, refused)

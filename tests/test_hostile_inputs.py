"""Hostile input at ingest: bombs, endless records, deep nesting, traversal names and globs, symlinks, vanishing
files.  Each case runs the real ingest stage in a subprocess whose address space is capped (``RLIMIT_AS``) far
below what the hostile file expands to, so a reader that holds what it reads fails the test with a
``MemoryError`` instead of passing on a big machine.  The files are made here, small on disk: a gzip bomb is one
compressed block repeated as gzip members (a valid multi-member stream), a few MB expanding to GBs.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import yaml

from governance.catalog import shard_rows
from medcurate.core.schema import make_doc_id
from medcurate.core.spec import SpecError, load_spec
from medcurate.erasure import verify_erased
from medcurate.runner import open_run, run_stage

# Enough for the interpreter, pyarrow and the caps of limits.yaml (64 MiB records: an ingest run peaks at ~0.55
# GB of address space); below what any bomb here expands to, so holding one whole fails.
MEMORY_LIMIT = 1 << 30
# A run with Ray (deid, curate, shard): each of its processes (driver, raylet, GCS, workers) reserves far more
# address space than it uses (gRPC, the object store, Great Expectations); with glibc's malloc arenas capped
# (MALLOC_ARENA_MAX) 4 GiB a process holds a whole run of the small inputs here.
RAY_MEMORY_LIMIT = 4 << 30
RAY_ENV = {"MALLOC_ARENA_MAX": "2"}
BOMB_BYTES = 5 << 28  # 1.25 GiB
BOMB_BLOCK = 64 << 20
KEY_ENV = {"MEDCURATE_PSEUDONYM_KEY": "test-key-0123456789abcdef"}

# Runs the ingest stage of a spec, then prints what it did as one JSON line.
INGEST = """
import json, sys
import pyarrow.parquet as pq
from medcurate.core.schema import RAW_DOCUMENT_SCHEMA
from medcurate.core.source_files import resolve
from medcurate.core.zones import read_zone
from medcurate.runner import open_run, run_stage

ctx = open_run(sys.argv[1], data_root=sys.argv[2])
report = run_stage(ctx, "ingest")


# The file name behind a record's opaque source_file id, from the owner-only mapping.
def name(record):
    return resolve(ctx.zones, record["source"], record["source_file"]).path.rsplit("/", 1)[-1]


quarantine = sorted(
    (r["reason"], r["position"] or "", name(r))
    for p in sorted((ctx.zones.quarantine / "ingest").glob("*.parquet"))
    for r in pq.read_table(p).to_pylist()
)
docs = sorted(
    d for s in ctx.spec.sources if (ctx.zones.raw / s.name).exists()
    for d in read_zone(ctx.zones.raw / s.name, RAW_DOCUMENT_SCHEMA).column("doc_id").to_pylist()
)
files = sorted((name(f), f["status"], f["reason"]) for f in report.details["input_files"])
print(json.dumps({"quarantine": quarantine, "docs": docs, "files": files}))
"""


def _limited(limit: int = MEMORY_LIMIT) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def run_limited(
    code: str, *args: str, limit: int = MEMORY_LIMIT, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter under the memory limit (each process it starts gets the same)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **KEY_ENV, **(env or {})},
        preexec_fn=functools.partial(_limited, limit),
        timeout=600,
    )


def result_of(done: subprocess.CompletedProcess) -> dict:
    """The JSON line a script printed last, its lists of records as tuples."""
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        k: [tuple(x) if isinstance(x, list) else x for x in v] if isinstance(v, list) else v for k, v in result.items()
    }


def ingest_limited(spec: Path) -> dict:
    return result_of(run_limited(INGEST, str(spec), str(spec.parent / "data")))


def docs(*natural_keys: str) -> list[str]:
    """The raw zone's doc_ids of these records of the source "src"."""
    return sorted(make_doc_id("src", key) for key in natural_keys)


def write_spec(folder: Path, kind: str, paths: list[str], name: str = "src", **extra: object) -> Path:
    source = {"name": name, "kind": kind, "paths": paths, "license": "synthetic", "legal_basis": "waiver", **extra}
    spec = folder / "spec.yaml"
    spec.write_text(json.dumps({"sources": [source]}))  # JSON is YAML
    return spec


def gzip_bomb(prefix: bytes, filler: bytes, size: int, suffix: bytes = b"") -> bytes:
    """A gzip stream of ``prefix``, ``size`` bytes of ``filler`` repeated, then ``suffix``: a few MB on disk."""
    return gzip.compress(prefix) + _bomb_member(filler) * (size // BOMB_BLOCK) + gzip.compress(suffix)


@functools.cache
def _bomb_member(filler: bytes) -> bytes:
    return gzip.compress((filler * (BOMB_BLOCK // len(filler) + 1))[:BOMB_BLOCK], compresslevel=9)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    return tmp_path


# ---------------------------------------------------------------------------------------------- bombs


def test_gzip_bomb_named_csv_gz_loses_only_its_endless_row(folder: Path):
    header = b"note_id,subject_id,text\nn1,p1,A note read before the bomb.\n"
    (folder / "in" / "notes.csv.gz").write_bytes(gzip_bomb(header, b"\0", BOMB_BYTES))
    assert (folder / "in" / "notes.csv.gz").stat().st_size < 8 << 20
    result = ingest_limited(write_spec(folder, "notes_csv", ["in/*"]))
    assert result["docs"] == docs("n1")
    assert result["quarantine"] == [("record_too_large", "line 3", "notes.csv.gz")]


def test_gzip_bomb_named_json_is_quarantined_at_the_record_cap(folder: Path):
    # gzip is recognised by its content: the name says JSON.
    bomb = gzip_bomb(b'{"resourceType": "Bundle", "entry": [], "pad": "', b"a", BOMB_BYTES, b'"}')
    (folder / "in" / "bundle.json").write_bytes(bomb)
    result = ingest_limited(write_spec(folder, "fhir", ["in/*"]))
    assert result["quarantine"] == [("record_too_large", "", "bundle.json")]
    assert result["files"] == [("bundle.json", "quarantined", "record_too_large")]


def test_file_cap_stops_a_bomb_of_valid_rows(folder: Path):
    row = b"n,p," + b"a valid note " * 80 + b"\n"
    (folder / "in" / "rows.csv").write_bytes(gzip_bomb(b"note_id,subject_id,text\n", row, BOMB_BYTES))
    spec = write_spec(folder, "notes_csv", ["in/*"], options={"limits": {"max_file_bytes": 1 << 20}})
    result = ingest_limited(spec)
    assert result["files"] == [("rows.csv", "quarantined", "file_too_large")] and result["docs"] == []


@pytest.mark.parametrize(
    ("kind", "name", "prefix", "tag"),
    [
        (
            "pubmed",
            "baseline.xml.gz",
            b"<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article><Abstract><AbstractText>",
            "AbstractText",
        ),
        ("pmc", "article.nxml", b'<article article-type="research-article"><front><article-meta></article-meta>'
         b"</front><body><sec><p>", "p"),
    ],
)  # fmt: skip
def test_xml_with_gigabytes_inside_one_element_is_quarantined(folder: Path, kind, name, prefix, tag):
    (folder / "in" / name).write_bytes(gzip_bomb(prefix, b"word ", BOMB_BYTES, f"</{tag}>".encode()))
    result = ingest_limited(write_spec(folder, kind, ["in/*"]))
    assert result["quarantine"] == [("record_too_large", "", name)]


def test_pubmed_records_before_an_endless_one_count_against_their_own_cap(folder: Path):
    article = b"<PubmedArticle><MedlineCitation><PMID>%d</PMID><Article><ArticleTitle>T</ArticleTitle></Article>"
    articles = b"".join(article % i + b"</MedlineCitation></PubmedArticle>" for i in range(1, 2001))
    (folder / "in" / "set.xml").write_bytes(b"<PubmedArticleSet>" + articles + b"</PubmedArticleSet>")
    # 2000 articles of ~130 bytes: far over a 64 KiB record cap together, each far under it.
    result = ingest_limited(write_spec(folder, "pubmed", ["in/*"], options={"limits": {"max_record_bytes": 65536}}))
    assert result["quarantine"] == [] and len(result["docs"]) == 2000


def deflate_bomb(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes, a few hundred KB: after a full flush each block's bytes no
    longer depend on what came before, so one compressed block can be repeated."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = deflate.compress(bytes(BOMB_BLOCK)) + deflate.flush(zlib.Z_FULL_FLUSH)
    return block * (size // BOMB_BLOCK) + deflate.flush()


def test_deflated_dicom_bomb_is_quarantined_at_the_record_cap(folder: Path):
    """pydicom inflates a Deflated Explicit VR dataset whole before reading it; ingest measures it first."""
    from pydicom.data import get_testdata_file
    from pydicom.filereader import read_file_meta_info

    deflated = Path(get_testdata_file("image_dfl.dcm"))
    meta_end = 144 + read_file_meta_info(deflated).FileMetaInformationGroupLength
    (folder / "in" / "good.dcm").write_bytes(deflated.read_bytes())
    (folder / "in" / "bomb.dcm").write_bytes(deflated.read_bytes()[:meta_end] + deflate_bomb(BOMB_BYTES))
    result = ingest_limited(write_spec(folder, "dicom", ["in/*"]))
    assert result["files"] == [
        ("bomb.dcm", "quarantined", "record_too_large"),
        ("good.dcm", "ingested", None),
    ]


# ------------------------------------------------------------------------------------ records and nesting


def test_oversized_csv_cell_quarantines_that_row_only(folder: Path):
    big = "x" * 300_000
    (folder / "in" / "notes.csv").write_text(
        "note_id,subject_id,text\n"
        'n1,p1,"First note, with a quoted ""word""."\n'
        f'n2,p2,"A cell far over the cap,\nacross lines, with ""quotes"" {big}\n{big}"\n'
        f"n3,p3,unquoted and over the cap {big}\n"
        'n4,p4,"Last note,\nstill read."\n'
    )
    spec = write_spec(folder, "notes_csv", ["in/*"], options={"limits": {"max_record_bytes": 100_000}})
    result = ingest_limited(spec)
    assert result["docs"] == docs("n1", "n4")
    assert result["quarantine"] == [
        ("record_too_large", "line 3", "notes.csv"),
        ("record_too_large", "line 6", "notes.csv"),
    ]


def test_ndjson_with_an_over_deep_and_an_over_long_line_keeps_the_others(folder: Path):
    good = [json.dumps({"resourceType": "Patient", "id": f"p{i}"}) for i in range(3)]
    observation = {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p0"}}
    deep = '{"resourceType": "Observation", "x": ' + "[" * 200 + "]" * 200 + "}"
    very_deep = "[" * 1_000_000 + "]" * 1_000_000  # past the decoder's own recursion limit
    lines = [good[0], deep, good[1], very_deep, json.dumps(observation)]
    body = ("\n".join(lines) + "\n").encode()
    # An endless line, then one more good line; gzip found by content although the name says .ndjson.
    (folder / "in" / "Patient.ndjson").write_bytes(
        gzip.compress(body)
        + gzip_bomb(b'{"resourceType": "Patient", "id": "', b"9", BOMB_BYTES, b'"}\n' + good[2].encode())
    )
    result = ingest_limited(write_spec(folder, "fhir", ["in/*"]))
    assert result["quarantine"] == [
        ("record_too_large", "line 6", "Patient.ndjson"),
        ("too_deep", "line 2", "Patient.ndjson"),
        ("too_deep", "line 4", "Patient.ndjson"),
    ]
    assert result["docs"] == docs("timeline/p0")


def test_deeply_nested_json_bundle_is_quarantined_whole(folder: Path):
    (folder / "in" / "deep.json").write_text(
        '{"resourceType": "Bundle", "entry": ' + "[" * 500_000 + "]" * 500_000 + "}"
    )
    result = ingest_limited(write_spec(folder, "fhir", ["in/*"]))
    assert result["files"] == [("deep.json", "quarantined", "too_deep")]


def test_hl7_message_with_an_endless_segment_is_rejected_alone(folder: Path):
    msh = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ORU^R01|{id}|P|2.5\r"
    pid = "PID|1||12345^^^HOSP^MR||Doe^Jane\r"
    obx = "OBX|1|TX|11502-2^Report^LN||Normal study.||||||F\r"
    endless = "OBX|1|TX|x^y^LN||" + "z" * 300_000 + "\r"  # its line goes through the same reader as NDJSON's
    feed = msh.format(id="m1") + pid + obx + msh.format(id="m2") + pid + endless + msh.format(id="m3") + pid + obx
    (folder / "in" / "feed.hl7").write_text(feed)
    result = ingest_limited(write_spec(folder, "hl7v2", ["in/*"], options={"limits": {"max_record_bytes": 100_000}}))
    assert result["docs"] == docs("m1", "m3")
    assert result["quarantine"] == [("record_too_large", "message 2", "feed.hl7")]


# ---------------------------------------------------------------------------------------- names and paths


def test_traversal_source_name_fails_the_spec_in_one_line_and_writes_nothing(folder: Path):
    (folder / "in" / "a.csv").write_text("note_id,subject_id,text\nn1,p1,text\n")
    spec = write_spec(folder, "notes_csv", ["in/*"], name="../../escaped_phi")
    done = run_limited(
        "import sys; from medcurate.cli import main; sys.exit(main(['run', sys.argv[1], '--data-root', sys.argv[2]]))",
        str(spec),
        str(folder / "data"),
    )
    assert done.returncode != 0
    message = [line for line in done.stderr.splitlines() if "escaped_phi" in line]
    assert len(message) == 1 and "not a plain identifier" in message[0]
    assert not list(folder.rglob("*escaped*")) and not (folder / "data" / "raw").exists()


def test_glob_outside_the_spec_folder_needs_allow_outside(folder: Path):
    outside = folder / "outside"
    outside.mkdir()
    (outside / "a.csv").write_text("note_id,subject_id,text\nn1,p1,text\n")
    spec_dir = folder / "spec"
    spec_dir.mkdir()
    for pattern in ["../outside/*.csv", str(outside / "*.csv"), "../../../etc/*"]:
        with pytest.raises(SpecError, match="reaches outside the spec's folder"):
            load_spec(write_spec(spec_dir, "notes_csv", [pattern]))
    result = ingest_limited(write_spec(spec_dir, "notes_csv", ["../outside/*.csv"], allow_outside=True))
    assert result["docs"] == docs("n1")


def test_symlinks_outside_the_folder_are_refused_and_dangling_ones_listed(folder: Path):
    row = "note_id,subject_id,text\n{0},p1,text\n"
    (folder / "in" / "a.csv").write_text(row.format("n1"))
    (folder / "secret.csv").write_text(row.format("n2"))
    spec_dir = folder / "in"
    (spec_dir / "inside.csv").symlink_to(spec_dir / "a.csv")
    (spec_dir / "escape.csv").symlink_to(folder / "secret.csv")
    (spec_dir / "gone.csv").symlink_to(folder / "deleted.csv")
    result = ingest_limited(write_spec(spec_dir, "notes_csv", ["*.csv"]))
    assert result["docs"] == docs("n1")  # a.csv, and inside.csv read as a second copy of it
    assert result["quarantine"] == [
        ("dangling_symlink", "", "gone.csv"),
        ("outside_spec_folder", "", "escape.csv"),
    ]
    spec = write_spec(spec_dir, "notes_csv", ["*.csv"], allow_outside=True)
    assert ingest_limited(spec)["docs"] == docs("n1", "n2")


# -------------------------------------------------------------------------------------------- vanishing


VANISH = """
import json, shutil, sys
import pyarrow.parquet as pq
from medcurate.core.context import StageReport
from medcurate.core.listing import list_inputs
from medcurate.core.quarantine import QuarantineWriter
from medcurate.core.source_files import resolve
from medcurate.runner import open_run
from pipelines.ingest.registry import PARSERS
from pipelines.ingest.stage import ingest_source

ctx = open_run(sys.argv[1], data_root=sys.argv[2])
source = ctx.spec.sources[0]
listing = list_inputs(source, ctx.spec.base_dir)
# Between listing and reading: one file is deleted, one directory goes with its file.
(ctx.spec.base_dir / "in" / "b.csv").unlink()
shutil.rmtree(ctx.spec.base_dir / "in" / "sub")
quarantine = QuarantineWriter(ctx.zones, "ingest", ctx.run_id, source=source.name)
report = StageReport("ingest", ctx.run_id)
files = ingest_source(ctx, source, PARSERS[source.kind](source.options), report, quarantine, listing)
[written] = quarantine.flush()


def name(record):
    return resolve(ctx.zones, source.name, record["source_file"]).path.rsplit("/", 1)[-1]


print(json.dumps({
    "files": sorted((name(f), f["status"], f["reason"]) for f in files),
    "quarantine": sorted((r["reason"], name(r)) for r in pq.read_table(written).to_pylist()),
    "output": report.counts(source.name).output,
}))
"""


def test_files_and_directories_vanishing_after_listing_are_quarantined(folder: Path):
    row = "note_id,subject_id,text\n{0},p1,text\n"
    (folder / "in" / "sub").mkdir()
    for name in ("a.csv", "b.csv", "sub/c.csv"):
        (folder / "in" / name).write_text(row.format(name))
    spec = write_spec(folder, "notes_csv", ["in/**/*.csv"])
    result = result_of(run_limited(VANISH, str(spec), str(folder / "data")))
    assert result["files"] == [
        ("a.csv", "ingested", None),
        ("b.csv", "quarantined", "file_vanished"),
        ("c.csv", "quarantined", "file_vanished"),
    ]
    assert result["quarantine"] == [("file_vanished", "b.csv"), ("file_vanished", "c.csv")] and result["output"] == 1


# ------------------------------------------------------------------------------------------- the caps


def test_caps_default_to_limits_yaml_and_are_overridden_per_source():
    from pipelines.ingest.limits import DEFAULTS, default_limits
    from pipelines.ingest.notes_csv import NotesCsvParser

    defaults = yaml.safe_load(DEFAULTS.read_text())
    assert default_limits().__dict__ == defaults
    parser = NotesCsvParser({"limits": {"max_record_bytes": 1000}, "delimiter": ";"})
    assert parser.limits.max_record_bytes == 1000 and parser.limits.max_depth == defaults["max_depth"]
    for bad, message in [({"max_bytes": 1}, "unknown key"), ({"max_depth": 0}, "positive"), ([1], "mapping")]:
        with pytest.raises(SpecError, match=message):
            NotesCsvParser({"limits": bad})


# ------------------------------------------------------------------------------------------ concurrent runs

# Holds the data root's run lock in another process until its stdin closes.
HOLD_ROOT = """
import sys
from pathlib import Path
from medcurate.core.run_lock import run_lock

with run_lock(Path(sys.argv[1]), "run-holding"):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_run_on_a_busy_data_root_refuses_and_writes_nothing(folder: Path):
    (folder / "in" / "a.csv").write_text("note_id,subject_id,text\nn1,p1,A note long enough to be kept.\n")
    spec = write_spec(folder, "notes_csv", ["in/*"])
    root = folder / "data"
    run = "import sys; from medcurate.cli import main; sys.exit(main(['run', sys.argv[1], '--data-root', sys.argv[2]]))"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLD_ROOT), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_limited,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        done = run_limited(run, str(spec), str(root))
    finally:
        holder.kill()  # dies holding the lock: the kernel releases it
        holder.wait()
    assert done.returncode == 75, done.stderr[-2000:]
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        line for line in done.stderr.splitlines() if "is in use by run run-holding" in line
    ]
    assert not (root / "governance" / "audit.log.jsonl").exists()
    assert not list((root / "raw").iterdir())

    # The killed holder left no lock behind: the next run takes the root.
    from medcurate.core.run_lock import run_lock

    with run_lock(root, "run-after"):
        assert "run-after" in (root / ".run.lock").read_text()


# --------------------------------------------------------------------------------------------------- reruns

NOTE = (
    "Seen in clinic for follow up of hypertension. Blood pressure is well controlled on lisinopril. "
    "Continue the current dose and recheck the kidney panel in three months."
)


# Runs ingest to curate twice on one data root (one Ray), then prints each run's quarantine and curated doc_ids.
RERUN = """
import json, sys
import pyarrow.parquet as pq
from medcurate.core.ray_runtime import ray_session
from medcurate.core.schema import DEID_DOCUMENT_SCHEMA
from medcurate.core.zones import read_zone
from medcurate.runner import open_run, run_stage


def run():
    ctx = open_run(sys.argv[1], data_root=sys.argv[2])
    for stage in ("ingest", "validate_raw", "deid", "curate"):
        run_stage(ctx, stage)
    records = sorted(
        (r["stage"], r["doc_id"], r["reason"], r["detail"])
        for p in sorted(ctx.zones.quarantine.glob("*/*.parquet"))
        for r in pq.read_table(p).to_pylist()
    )
    curated = sorted(read_zone(ctx.zones.curated / "src", DEID_DOCUMENT_SCHEMA).column("doc_id").to_pylist())
    return records, curated


with ray_session():
    (quarantine, curated), (quarantine_again, curated_again) = run(), run()
print(json.dumps({"quarantine": quarantine, "curated": curated, "quarantine_again": quarantine_again,
                  "curated_again": curated_again}))
"""


def test_a_rerun_of_a_completed_root_reproduces_its_quarantine(folder: Path):
    other = "Chest pain resolved after rest. Troponin negative twice. Discharged home with a stress test booked."
    rows = [("n1", "p1", NOTE), ("n2", "p2", NOTE), ("n3", "p3", other)]
    lines = "".join(f"{note_id},{patient},{text}\n" for note_id, patient, text in rows)
    (folder / "in" / "notes.csv").write_text("note_id,subject_id,text\n" + lines)
    spec = write_spec(folder, "notes_csv", ["in/*"])

    done = run_limited(RERUN, str(spec), str(folder / "data"), limit=RAY_MEMORY_LIMIT, env=RAY_ENV)
    result = result_of(done)
    (duplicate,) = [tuple(r) for r in result["quarantine"]]
    kept = {d for d in docs("n1", "n2") if d != duplicate[1]}.pop()
    assert duplicate == ("curate", duplicate[1], "exact_duplicate", f"exact_dedup: kept twin {kept}")
    assert result["curated"] == sorted([kept, *docs("n3")])
    # The same quarantine, with its reason and twin, and the same curated documents.
    assert result["quarantine_again"] == result["quarantine"] and result["curated_again"] == result["curated"]


# ------------------------------------------------------------------------------------------------- erasure

# Ingests a spec, then lists the quarantined copies naming a patient as erasure finds them, in one capped process.
INGEST_AND_SCAN = """
import json, sys
from medcurate.quarantine_copies import holding
from medcurate.runner import open_run, run_stage

ctx = open_run(sys.argv[1], data_root=sys.argv[2], run_id=sys.argv[4])
run_stage(ctx, "ingest")
copies = sorted(p.name.split("-", 1)[1] for p in (ctx.zones.quarantine / "files").rglob("*") if p.is_file())
named = sorted(p.name.split("-", 1)[1] for p in holding(ctx.zones, ctx.spec, {sys.argv[3]}))
print(json.dumps({"copies": copies, "named": named}))
"""

# Whether importing the erasure pulls in what it never uses (Ray, the de-identification engine).
ERASURE_IMPORTS = """
import json, sys
import medcurate.cli, medcurate.erasure
heavy = ("ray", "presidio_analyzer", "spacy", "transformers", "great_expectations")
print(json.dumps({"imported": sorted(m for m in heavy if m in sys.modules)}))
"""


def _copies(root: Path) -> list[str]:
    return sorted(p.name.split("-", 1)[1] for p in (root / "quarantine" / "files").rglob("*") if p.is_file())


def test_erasure_imports_neither_ray_nor_the_deid_engine():
    # Each would cost hundreds of MB of address space (and Ray a cluster) for nothing: erasure rewrites files.
    assert result_of(run_limited(ERASURE_IMPORTS)) == {"imported": []}


def test_erasing_a_patient_deletes_the_quarantined_file_copies_that_name_them(folder: Path, ray_local, monkeypatch):
    (folder / "notes").mkdir()
    other = "Chest pain resolved after rest. Troponin negative twice. Discharged home with a stress test booked."
    (folder / "notes" / "good.csv").write_text(f"note_id,subject_id,text\nn1,QX-10042,{NOTE}\nn2,QX-20077,{other}\n")
    # Refused whole (not UTF-8): one copy holds the erased patient (its key in lower case), one another patient.
    (folder / "notes" / "latin1_a.csv").write_bytes(b"note_id,subject_id,text\nn3,qx-10042,Caf\xe9 visit.\n")
    (folder / "notes" / "latin1_b.csv").write_bytes(b"note_id,subject_id,text\nn4,QX-20077,Caf\xe9 visit.\n")
    # A bomb refused at the record cap that names the patient only after 1.25 GiB: found by streaming it.
    tail = b'", "entry": [{"resource": {"resourceType": "Patient", "id": "QX-10042"}}]}'
    bomb = gzip_bomb(b'{"resourceType": "Bundle", "pad": "', b"a", BOMB_BYTES, tail)
    (folder / "in" / "bundle.json").write_bytes(bomb)
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/QX-20077"},
        "onsetDateTime": "2019-07-22",
        "code": {"text": "Type 2 diabetes mellitus, diet controlled"},
    }
    patient = {"resourceType": "Patient", "id": "QX-20077", "birthDate": "1961-03-04"}
    good = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}, {"resource": condition}]}
    (folder / "in" / "good.json").write_text(json.dumps(good))  # the source must publish something
    sources = [
        {"name": "notes", "kind": "notes_csv", "paths": ["notes/*"], "license": "synthetic", "legal_basis": "waiver"},
        {"name": "ehr", "kind": "fhir", "paths": ["in/*"], "license": "synthetic", "legal_basis": "waiver"},
    ]
    spec, root, run_id = folder / "spec.yaml", folder / "data", "run-erase-copies"
    spec.write_text(json.dumps({"sources": sources}))

    scan = result_of(run_limited(INGEST_AND_SCAN, str(spec), str(root), "QX-10042", run_id))
    assert scan == {"copies": ["bundle.json", "latin1_a.csv", "latin1_b.csv"], "named": ["bundle.json", "latin1_a.csv"]}
    # The rest of the run in-process (deid, curate and shard need Ray, whose reservations exceed the cap), so that
    # the erasure below has published shards to rewrite.
    monkeypatch.setenv("MEDCURATE_PSEUDONYM_KEY", KEY_ENV["MEDCURATE_PSEUDONYM_KEY"])
    ctx = open_run(spec, data_root=root, run_id=run_id)
    for stage in ("validate_raw", "deid", "curate", "shard", "validate_shards", "catalog", "report"):
        run_stage(ctx, stage)

    # The whole erase command under the same cap: the zones, the copies, the shards, the catalog and the report.
    erase_cli = ["-m", "medcurate.cli", "erase", "--patient", "QX-10042", "--spec", str(spec), "--data-root", str(root)]
    done = subprocess.run(
        [sys.executable, *erase_cli],
        capture_output=True,
        text=True,
        env={**os.environ, **KEY_ENV},
        preexec_fn=_limited,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]  # verified: no copy names the patient any more
    assert "quarantined_files: 2" in done.stdout and "1 shards rewritten" in done.stdout
    assert "QX-10042" not in done.stdout + done.stderr
    assert _copies(root) == ["latin1_b.csv"]
    manifest = json.loads((root / "shards" / "manifest.json").read_text())
    published = shard_rows(root / "shards", manifest)["doc_id"].to_pylist()
    # The erased patient's note left its shard; the other patient's note and timeline stay.
    assert make_doc_id("notes", "n1") not in published and make_doc_id("notes", "n2") in published
    assert len(published) == 2

    # Verification looks at the copies too: one naming the patient is reported (by count, never by name).
    (root / "quarantine" / "files" / "notes" / "0000-left.csv").write_bytes(b"n5,QX-10042,x\n")
    ctx = open_run(spec, data_root=root)
    assert verify_erased(ctx, set(), set(), None, {"QX-10042"}) == [
        "1 quarantined file copies hold an identifier of the erased patient"
    ]

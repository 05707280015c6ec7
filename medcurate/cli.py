"""The ``medcurate`` command line.

``medcurate run`` with no spec generates the bundled synthetic sample and runs every stage on it (the demo);
``medcurate run SPEC.yaml`` runs a real corpus and needs the pseudonymization key in the environment.
Errors print one clear, PHI-free line and exit non-zero.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medcurate.core.context import StageFailed
from medcurate.core.keys import MissingKeyError
from medcurate.core.run_lock import RootBusy
from medcurate.core.spec import SpecError

EXIT_FAILED = 1
EXIT_USAGE = 2
# `audit verify` found no log to verify (deleted, or a wrong --data-root): distinct from tampering.
EXIT_NO_AUDIT_LOG = 3
EXIT_BUSY = 75  # EX_TEMPFAIL: another run holds the data root; a retry later may succeed
DATA_ROOT_ENV = "MEDCURATE_DATA_ROOT"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("medcurate")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown"


def _print_table(rows: list[dict], columns: list[str]) -> None:
    """Numbers right-aligned, text (the first and last columns) left-aligned."""
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    text = {columns[0], columns[-1]}
    print("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        cells = (_fmt(row[c]).ljust(widths[c]) if c in text else _fmt(row[c]).rjust(widths[c]) for c in columns)
        print("  ".join(cells).rstrip())


def _quarantined_files(reports: list, quarantine: object) -> str | None:
    """One line naming the input files ingest quarantined, by source and reason (files are no documents, so
    the table's counts do not show them); None when there are none."""
    from collections import Counter

    ingest = next((r for r in reports if r.stage == "ingest"), None)
    files = [f for f in (ingest.details.get("input_files", []) if ingest else []) if f["status"] == "quarantined"]
    if not files:
        return None
    by_source = Counter((f["source"], f["reason"]) for f in files)
    listed = ", ".join(f"{source} {reason}: {n}" for (source, reason), n in sorted(by_source.items()))
    return f"quarantined files: {len(files)} ({listed}); see {quarantine}"


def _fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def cmd_run(args: argparse.Namespace) -> int:
    from medcurate.core import storage
    from medcurate.orchestration import SAMPLE_SPEC, generate_sample_spec
    from medcurate.runner import open_run, run_pipeline, summary_rows

    demo = args.spec in (None, SAMPLE_SPEC)
    spec_path = args.spec
    if demo:
        spec_path = generate_sample_spec(args.data_root)
        print(f"demo: generated the synthetic sample corpus in {spec_path.parent}/ (spec {spec_path})")
    ctx = open_run(spec_path, data_root=args.data_root, run_id=args.run_id, demo=demo)
    root = storage.display(ctx.zones.root)
    print(f"run {ctx.run_id}: corpus '{ctx.spec.name}', {len(ctx.spec.sources)} sources, data root {root}")
    try:
        reports = run_pipeline(ctx)
    except StageFailed as exc:
        print(f"error: stage failed: {exc}; nothing downstream was published", file=sys.stderr)
        return EXIT_FAILED
    except RootBusy:
        raise
    except Exception as exc:
        log_path = ctx.zones.governance / "logs" / f"{ctx.run_id}.log"
        print(
            f"error: a stage crashed ({type(exc).__name__}); nothing downstream was published; see {log_path}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print()
    _print_table(summary_rows(reports), ["stage", "input", "output", "removed", "seconds", "reasons"])
    quarantined = _quarantined_files(reports, ctx.zones.quarantine)
    if quarantined:
        print(quarantined)
    for warning in (w for r in reports for w in r.details.get("warnings", [])):
        print(f"warning: {warning}")
    report = reports[-1].details
    print()
    print(f"report: {report.get('html', ctx.zones.governance / 'report.html')}")
    manifest = next((r.details.get("manifest") for r in reports if r.stage == "shard"), None)
    if manifest:
        print(f"shards: {ctx.zones.shards} (manifest {manifest})")
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from medcurate.runner import open_run, run_stage

    ctx = open_run(args.spec, data_root=args.data_root, run_id=args.run_id, demo=args.demo)
    try:
        report = run_stage(ctx, args.name)
    except StageFailed as exc:
        print(f"error: stage {args.name} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.name}: {report.total_input} in, {report.total_output} out, removed {dict(report.removed_by_reason)}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from medcurate.sample import generate_sample

    print(generate_sample(Path(args.out_dir)))
    return 0


def cmd_deid_eval(args: argparse.Namespace) -> int:
    from pipelines.deid.evaluate import evaluate, print_evaluation

    predictions = Path(args.predictions) if args.predictions else None
    print_evaluation(evaluate(Path(args.gold), predictions_out=predictions, missed=args.missed))
    return 0


def cmd_deid_text(args: argparse.Namespace) -> int:
    from pipelines.deid.evaluate import deidentify_text

    sys.stdout.write(deidentify_text(sys.stdin.read()))
    return 0


class NoDataRoot(ValueError):
    """Nothing names the data root a governance command should read."""


def _data_root(args: argparse.Namespace) -> Path:
    """--data-root, else $MEDCURATE_DATA_ROOT, else the data root of --spec; never the current directory.

    These commands read governance/ only, so an object-store root is pulled for that zone alone: an auditor's
    machine never receives the PHI zones.  (Lineage also shows a source file's path where the owner-only raw/
    is local and readable.)
    """
    import os

    from medcurate.core import storage
    from medcurate.orchestration import data_root_of

    root = args.data_root or os.environ.get(DATA_ROOT_ENV) or (data_root_of(args.spec, None) if args.spec else None)
    if not root:
        raise NoDataRoot(f"no data root: give --data-root DIR, set ${DATA_ROOT_ENV} or give --spec SPEC")
    return storage.checkout(root, zones=["governance"])


def cmd_lineage(args: argparse.Namespace) -> int:
    from governance import lineage
    from governance.catalog import catalog_path, connect
    from medcurate.core.source_files import resolve
    from medcurate.core.zones import Zones

    if not (args.doc_id or args.shard):
        print("error: give a DOC_ID or --shard PATH", file=sys.stderr)
        return EXIT_USAGE
    zones = Zones(_data_root(args))
    with connect(catalog_path(zones)) as con:
        doc_id = args.doc_id
        if args.shard and args.row is None:
            shard = lineage.shard_contents(con, args.shard)
            if shard is None:
                print(f"error: no shard {args.shard} in the catalog", file=sys.stderr)
                return EXIT_FAILED
            print(lineage.format_shard(shard))
            return 0
        if args.shard:
            doc_id = lineage.doc_id_at(con, args.shard, args.row)
        doc = lineage.document_lineage(con, doc_id) if doc_id else None
    if doc is None:
        print("error: no such document in the catalog", file=sys.stderr)
        return EXIT_FAILED
    print(lineage.format_document(doc, resolve(zones, doc["source"], doc["source_file"])))
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from governance.audit import HeadPrefixError, verify
    from medcurate.core.zones import Zones

    try:
        result = verify(Zones(_data_root(args)).governance, expect_head=args.expect_head)
    except HeadPrefixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if result.missing:
        print(f"error: no audit log: {result.problem} (check --data-root)", file=sys.stderr)
        return EXIT_NO_AUDIT_LOG
    if not result.ok:
        print(f"audit log TAMPERED: {result.problem}", file=sys.stderr)
        return EXIT_FAILED
    print(f"audit log intact: {result.events} events, head {result.head_hash}")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    import os

    from medcurate.erasure import ErasureIncomplete, ErasureRequestError, erase, open_for_erasure
    from medcurate.orchestration import SAMPLE_SPEC, generate_sample_spec

    data_root = args.data_root or os.environ.get(DATA_ROOT_ENV)

    demo = args.spec == SAMPLE_SPEC  # the sample a `medcurate run sample` with the same --data-root wrote
    spec = generate_sample_spec(data_root) if demo else args.spec
    patient = sys.stdin.readline().strip() if args.patient == "-" else args.patient
    ctx = open_for_erasure(spec, data_root, demo=demo)
    try:
        result = erase(ctx, patient_key=patient, source=args.source)
    except ErasureRequestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ErasureIncomplete as exc:
        print(f"error: erasure incomplete: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{result.erasure_id}: {result.kind} {result.subject}: {result.documents_removed} documents removed "
        f"({', '.join(f'{z}: {n}' for z, n in result.removed_by_zone.items())}); "
        f"{len(result.shards_rewritten)} shards rewritten; Merkle root {result.merkle_root_after}; "
        f"verified; audit event {result.audit_seq}"
    )
    return 0


def cmd_export_megatron(args: argparse.Namespace) -> int:
    from pipelines.shard.megatron import NotASplitDir, export_megatron

    try:
        result = export_megatron(Path(args.split_dir), Path(args.out_prefix))
    except NotASplitDir as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.out_prefix}.bin/.idx: {result['documents']} documents, {result['tokens']} tokens, {result['dtype']}")
    return 0


def cmd_airflow_setup(args: argparse.Namespace) -> int:
    from medcurate.airflow_support import RAY_POOL, ensure_pool

    print(f"pool {RAY_POOL}: {'created (1 slot)' if ensure_pool() else 'exists, left as it is'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcurate", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage on a corpus spec (no spec: the bundled sample)")
    run.add_argument(
        "spec", nargs="?", help="corpus spec YAML; 'sample' or nothing: the bundled synthetic sample (demo key)"
    )
    run.add_argument("--data-root", help="override the spec's data_root (a directory or an s3:// URI)")
    run.add_argument("--run-id", help="use this run id instead of a new one")
    run.set_defaults(func=cmd_run)

    from medcurate.core.names import STAGE_NAMES

    stage = sub.add_parser("stage", help="run one stage of a run (what an Airflow task does)")
    stage.add_argument("name", choices=STAGE_NAMES, help="the stage to run")
    stage.add_argument("spec", help="corpus spec YAML")
    stage.add_argument("--data-root", help="override the spec's data_root (a directory or an s3:// URI)")
    stage.add_argument("--run-id", required=True, help="the run this stage belongs to (the earlier stages' run id)")
    stage.add_argument("--demo", action="store_true", help="allow the demo's throwaway key")
    stage.set_defaults(func=cmd_stage)

    sample = sub.add_parser("sample", help="write the synthetic sample corpus and its spec")
    sample.add_argument("out_dir", help="directory to write the sample's files and sample.yaml into")
    sample.set_defaults(func=cmd_sample)

    deid_eval = sub.add_parser("deid-eval", help="score de-identification on a labelled JSONL corpus")
    deid_eval.add_argument("gold", help='JSONL: {"id", "text", "spans": [{"start", "end", "label"}]}')
    deid_eval.add_argument("--predictions", help="also write the predicted spans to this JSONL file")
    deid_eval.add_argument(
        "--missed",
        type=int,
        default=0,
        metavar="N",
        help="developers only: print up to N missed gold spans and N false positives per label, with context",
    )
    deid_eval.set_defaults(func=cmd_deid_eval)

    deid_text = sub.add_parser("deid-text", help="de-identify text from stdin to stdout")
    deid_text.set_defaults(func=cmd_deid_text)

    data_root_help = f"the run's data root, a directory or an s3:// URI (default: ${DATA_ROOT_ENV}, else --spec's)"
    spec_help = "the corpus spec whose data_root to read when neither --data-root nor $MEDCURATE_DATA_ROOT is set"
    lineage = sub.add_parser("lineage", help="a document's path from source file to shard row, or a shard's contents")
    lineage.add_argument("doc_id", nargs="?", help="the document's doc_id")
    lineage.add_argument("--shard", help="a shard file (path relative to shards/, or a full path)")
    lineage.add_argument("--row", type=int, help="with --shard: the lineage of the document at this row")
    lineage.add_argument("--data-root", help=data_root_help)
    lineage.add_argument("--spec", help=spec_help)
    lineage.set_defaults(func=cmd_lineage)

    audit = sub.add_parser("audit", help="the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the chain: exit 1 and the first bad event on tampering, 3 when there is no log"
    )
    verify.add_argument("--data-root", help=data_root_help)
    verify.add_argument("--spec", help=spec_help)
    verify.add_argument(
        "--expect-head",
        help="a head hash recorded elsewhere (report, catalog) that must be in the chain; a unique prefix of "
        "at least 8 characters is enough",
    )
    verify.set_defaults(func=cmd_audit_verify)

    erase = sub.add_parser("erase", help="remove a patient's or a source's records from every zone and the shards")
    subject = erase.add_mutually_exclusive_group(required=True)
    subject.add_argument("--patient", help="the patient key as the source system wrote it; '-' reads it from stdin")
    subject.add_argument("--source", help="a source name (licence withdrawn)")
    erase.add_argument(
        "--spec", required=True, help="the corpus spec of the run; 'sample': the one `medcurate run sample` wrote"
    )
    erase.add_argument(
        "--data-root", help=f"override the spec's data_root (default: ${DATA_ROOT_ENV}, else the spec's)"
    )
    erase.set_defaults(func=cmd_erase)

    airflow_setup = sub.add_parser(
        "airflow-setup",
        help="after `airflow db migrate`: create what the DAGs need in Airflow (the medcurate_ray pool)",
    )
    airflow_setup.set_defaults(func=cmd_airflow_setup)

    megatron = sub.add_parser("export-megatron", help="write a shard split as a Megatron-LM indexed dataset")
    megatron.add_argument("split_dir", help="a split directory, e.g. DATA_ROOT/shards/train")
    megatron.add_argument("out_prefix", help="writes OUT_PREFIX.bin and OUT_PREFIX.idx")
    megatron.set_defaults(func=cmd_export_megatron)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The run log under governance/logs/ always gets INFO; the terminal only gets it with --verbose.
    console = logging.StreamHandler()
    console.setLevel(logging.INFO if args.verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console])
    if not args.verbose:
        logging.getLogger("ray").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except (SpecError, MissingKeyError, FileNotFoundError, NoDataRoot) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RootBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BUSY


if __name__ == "__main__":
    sys.exit(main())

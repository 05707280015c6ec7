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

from medcurate.context import StageFailed
from medcurate.keys import MissingKeyError
from medcurate.spec import SpecError

EXIT_FAILED = 1
EXIT_USAGE = 2


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(_fmt(row[c]).rjust(widths[c]) if c != columns[0] else row[c].ljust(widths[c]) for c in columns))


def _fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def cmd_run(args: argparse.Namespace) -> int:
    from medcurate.orchestration import DEMO_DIR
    from medcurate.runner import open_run, run_pipeline, summary_rows

    demo = args.spec is None
    spec_path = args.spec
    if demo:
        from medcurate.sample import generate_sample

        spec_path = generate_sample(DEMO_DIR)
        print(f"demo: generated the synthetic sample corpus in {DEMO_DIR}/ (spec {spec_path})")
    ctx = open_run(spec_path, data_root=args.data_root, run_id=args.run_id, demo=demo)
    print(f"run {ctx.run_id}: corpus '{ctx.spec.name}', {len(ctx.spec.sources)} sources, data root {ctx.zones.root}")
    try:
        reports = run_pipeline(ctx)
    except StageFailed as exc:
        print(f"error: stage failed: {exc}; nothing downstream was published", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:
        log_path = ctx.zones.governance / "logs" / f"{ctx.run_id}.log"
        print(
            f"error: a stage crashed ({type(exc).__name__}); nothing downstream was published; see {log_path}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print()
    _print_table(summary_rows(reports), ["stage", "input", "output", "removed", "seconds"])
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
    import json

    from pipelines.deid.evaluate import evaluate

    result = evaluate(Path(args.gold), predictions_out=Path(args.predictions) if args.predictions else None)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_deid_text(args: argparse.Namespace) -> int:
    from pipelines.deid.evaluate import deidentify_text

    sys.stdout.write(deidentify_text(sys.stdin.read()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medcurate", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage on a corpus spec (no spec: the bundled sample)")
    run.add_argument("spec", nargs="?", help="corpus spec YAML; omit to run the bundled synthetic sample")
    run.add_argument("--data-root", help="override the spec's data_root")
    run.add_argument("--run-id", help="use this run id instead of a new one")
    run.set_defaults(func=cmd_run)

    from medcurate.runner import STAGE_NAMES

    stage = sub.add_parser("stage", help="run one stage of a run (what an Airflow task does)")
    stage.add_argument("name", choices=STAGE_NAMES)
    stage.add_argument("spec")
    stage.add_argument("--data-root")
    stage.add_argument("--run-id", required=True)
    stage.add_argument("--demo", action="store_true", help="allow the demo's throwaway key")
    stage.set_defaults(func=cmd_stage)

    sample = sub.add_parser("sample", help="write the synthetic sample corpus and its spec")
    sample.add_argument("out_dir")
    sample.set_defaults(func=cmd_sample)

    deid_eval = sub.add_parser("deid-eval", help="score de-identification on a labelled JSONL corpus")
    deid_eval.add_argument("gold", help='JSONL: {"id", "text", "spans": [{"start", "end", "label"}]}')
    deid_eval.add_argument("--predictions", help="also write the predicted spans to this JSONL file")
    deid_eval.set_defaults(func=cmd_deid_eval)

    deid_text = sub.add_parser("deid-text", help="de-identify text from stdin to stdout")
    deid_text.set_defaults(func=cmd_deid_text)
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
    except (SpecError, MissingKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())

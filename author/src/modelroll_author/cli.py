"""``modelroll``: the model author's command (argument parsing and output; the work is in the
other modules).

Exit codes: 0 done; 1 the command ran and its check failed (a metric beyond its bound, an
artifact the server's loader refuses, an upload the store refused); 2 the command cannot run as
given (arguments, files, columns), always with one line naming the problem, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from modelroll_contract import METHODS, MODEL_FORMATS

from .errors import EXIT_FAILED, EXIT_OK, AuthorError

PROG = "modelroll"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Evaluate, package and push a scikit-learn model for a modelroll ModelDeployment.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_options(c: argparse.ArgumentParser) -> None:
        c.add_argument("model", metavar="MODEL", help="the model file: .joblib, .pkl/.pickle or .skops")
        c.add_argument(
            "--model-format", choices=MODEL_FORMATS, help="MODEL's format, when its file name does not say it"
        )
        c.add_argument(
            "--trusted",
            action="append",
            default=[],
            metavar="TYPE",
            help="a type the skops MODEL may hold beyond skops' defaults (repeatable); review it first",
        )

    e = sub.add_parser("evaluate", help="metrics of MODEL on labelled data, checked against bounds")
    model_options(e)
    e.add_argument("--data", required=True, metavar="CSV", help="labelled data with a header row")
    e.add_argument("--target", required=True, metavar="COL", help="the column that holds the true label or value")
    e.add_argument(
        "--min",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail (exit 1) if METRIC is below VALUE: accuracy, precision, recall, f1, roc_auc, r2 (repeatable)",
    )
    e.add_argument(
        "--max",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fail (exit 1) if the error METRIC is above VALUE: mae, rmse (repeatable)",
    )
    e.add_argument("--json", action="store_true", help="print one JSON object")

    k = sub.add_parser("package", help="write the artifact, its reference statistics and report into DIR")
    model_options(k)
    k.add_argument("--reference", required=True, metavar="CSV", help="reference data (features, optionally the label)")
    k.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory (or an earlier package's)")
    k.add_argument(
        "--format", choices=MODEL_FORMATS, default="skops", help="the artifact's format (default: skops, safe to load)"
    )
    k.add_argument("--version", metavar="V", help="spec.model.version: shown in status and metrics")
    k.add_argument("--method", choices=METHODS, help="spec.model.method (default: predict_proba when the model has it)")
    k.add_argument("--target", metavar="COL", help="the label column of --reference: also write report.json")
    k.add_argument("--bins", type=int, default=10, metavar="N", help="quantile bins per feature (default: 10)")
    k.add_argument("--json", action="store_true", help="print one JSON object")

    u = sub.add_parser("push", help="upload every file of DIR under URI (file:// or s3://)")
    u.add_argument("dir", metavar="DIR", help="a directory written by `modelroll package`")
    u.add_argument("uri", metavar="URI", help="file:///path/prefix or s3://BUCKET/PREFIX")
    u.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    try:
        if args.command == "evaluate":
            return _evaluate(args, out, err)
        if args.command == "package":
            return _package(args, out, err)
        return _push(args, out, err)
    except AuthorError as e:
        print(f"{PROG}: error: {e}", file=err)
        return e.exit_code


def _load(args: argparse.Namespace, err: TextIO) -> Any:
    from . import model

    m = model.load(args.model, args.model_format, args.trusted)
    for note in m.loaded.warnings:
        print(f"{PROG}: warning: {note}", file=err)
    return m


def _print_json(obj: Any, out: TextIO) -> None:
    print(json.dumps(obj, indent=2, allow_nan=False), file=out)


def _evaluate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from . import data, evaluation

    thresholds = [evaluation.parse_threshold(t, "min") for t in args.min]
    thresholds += [evaluation.parse_threshold(t, "max") for t in args.max]
    m = _load(args, err)
    evaluation.check_applicable(thresholds, m.task)
    ds = data.match(data.read_csv(args.data), args.data, m, args.target)
    result = evaluation.evaluate(m, ds)
    failures = evaluation.check(result.report, thresholds)
    if args.json:
        _print_json(result.report, out)
    else:
        print(evaluation.text_report(m, ds, result), file=out)
    for line in failures:
        print(f"{PROG}: {line}", file=err)
    return EXIT_FAILED if failures else EXIT_OK


def _package(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from . import data, package

    m = _load(args, err)
    ds = data.match(data.read_csv(args.reference), args.reference, m, args.target)
    pkg = package.package(m, ds, Path(args.out), args.format, args.version, args.method, args.bins)
    if args.json:
        _print_json(
            {
                "path": str(pkg.artifact.path),
                "digest": pkg.artifact.digest,
                "size": pkg.artifact.size,
                "format": pkg.format,
                "version": pkg.version,
                "method": pkg.method,
                "reference": str(pkg.reference.path),
                "reference_digest": pkg.reference.digest,
                "report": None if pkg.report is None else str(pkg.report.path),
                "report_digest": None if pkg.report is None else pkg.report.digest,
                "metrics": None if pkg.evaluation is None else _headline(pkg.evaluation.report),
                "spec": package.package_spec(pkg),
            },
            out,
        )
        return EXIT_OK
    ref = pkg.statistics
    print(f"wrote {pkg.artifact.path}  {pkg.artifact.digest}  ({pkg.format}, {pkg.artifact.size} bytes)", file=out)
    print(f"wrote {pkg.reference.path}  {pkg.reference.digest}  ({ref.n_features} features, {ref.rows} rows)", file=out)
    if pkg.report is not None and pkg.evaluation is not None:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in _headline(pkg.evaluation.report).items() if v is not None)
        print(f"wrote {pkg.report.path}  {pkg.report.digest}  ({shown})", file=out)
    print(
        "\nspec fields for the ModelDeployment (after `modelroll push`, use the URIs it prints):\n"
        + package.spec_yaml(package.package_spec(pkg)),
        file=out,
    )
    return EXIT_OK


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    from .evaluation import METRICS_OF_TASK

    return {k: report[k] for k in METRICS_OF_TASK[report["task"]]}


def _push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from . import package, push

    def shown(p: push.Pushed) -> None:
        if not args.json:
            print(f"{p.uri}  {p.digest}", file=out, flush=True)

    done = push.push(Path(args.dir), args.uri, on_pushed=shown)
    spec = push.pushed_spec(Path(args.dir), done)
    if args.json:
        objects = [{"uri": p.uri, "digest": p.digest, "size": p.size} for p in done]
        _print_json({"objects": objects, "spec": spec}, out)
    elif spec is not None:
        print("\nspec fields for the ModelDeployment:\n" + package.spec_yaml(spec), file=out)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

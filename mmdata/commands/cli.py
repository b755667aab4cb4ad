"""``mmdata`` command line: run, validate, stages, sql, check, retry, report, demo, ..."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from mmdata.core.flags import add_progress_flags, positive_int, progress_mode
from mmdata.exports import FORMATS

EXIT_USAGE = 2
DEFAULT_CATALOG_ENV = "MMDATA_CATALOG"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mmdata`` console script; returns the exit status."""
    if argv is None and hasattr(signal, "SIGPIPE"):
        # the console script only (`mmdata sql ... | head` ends quietly): a library call
        # (tests, notebooks) must not change how its whole process handles SIGPIPE
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except Exception as exc:  # noqa: BLE001 - known errors become one clear line
        if not _is_user_error(exc):
            raise
        print(f"mmdata {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _is_user_error(exc: Exception) -> bool:
    from mmdata.core.errors import MmdataError
    from mmdata.core.io import PERMANENT_ERRNOS

    if isinstance(exc, OSError) and exc.errno in PERMANENT_ERRNOS:
        return True  # the message names the file; a traceback adds nothing
    return isinstance(exc, MmdataError | FileNotFoundError | PermissionError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmdata",
        description="Build multimodal pretraining corpora: recipes -> shards -> catalog.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a recipe (only what is not done yet)")
    run.add_argument("recipe", help="recipe YAML")
    _add_execution_flags(run)
    add_progress_flags(run)
    run.add_argument("--catalog", help="catalog file (default: the recipe's)")
    run.set_defaults(handler=_cmd_run)

    validate = sub.add_parser("validate", help="check a recipe without running it")
    validate.add_argument("recipe")
    validate.set_defaults(handler=_cmd_validate)

    stages = sub.add_parser("stages", help="list registered sources and stages")
    stages.add_argument(
        "--imports",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="also import these modules first (a recipe's imports: your own stages)",
    )
    stages.set_defaults(handler=_cmd_stages)

    sql = sub.add_parser("sql", help="query a catalog (read-only)")
    sql.add_argument("query")
    _add_catalog_flag(sql)
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.set_defaults(handler=_cmd_sql)

    check = sub.add_parser(
        "check", help="catalog integrity: listed shards exist with their sha256 and rows; orphans"
    )
    _add_catalog_flag(check)
    check.add_argument("--corpus", help="only this corpus (default: every corpus)")
    check.add_argument(
        "--no-hash", action="store_true", help="skip sha256 (sizes, footers and rows only)"
    )
    check.add_argument("--json", action="store_true", help="problems as JSON lines only")
    add_progress_flags(check, json=False)
    check.set_defaults(handler=_cmd_check)

    retry = sub.add_parser(
        "retry",
        help="re-attempt the rows of a corpus rejected for transient reasons (timeouts, "
        "429, 5xx, connection errors); what now succeeds moves from rejects to images",
    )
    retry.add_argument("corpus")
    retry.add_argument(
        "--reasons",
        default="timeout,http_429,http_5xx,connection_error",
        help="comma-separated reject reasons to retry; http_5xx is any 5xx status "
        "(default: %(default)s)",
    )
    _add_catalog_flag(retry)
    retry.add_argument(
        "--recipe",
        help="the corpus's recipe file, when the text stored in the catalog does not rebuild "
        "it here (relative paths, ${VARIABLES}); it must be the same recipe",
    )
    add_progress_flags(retry)
    retry.set_defaults(handler=_cmd_retry)

    report = sub.add_parser(
        "report",
        help="one self-contained HTML file: funnel, distributions, duplicates, samples "
        "drawn with boxes and scene graphs, recipe and runs",
    )
    report.add_argument("corpus")
    report.add_argument("-o", "--out", help="the HTML file (default: report-CORPUS.html)")
    _add_catalog_flag(report)
    report.add_argument("--samples", type=int, default=24, help="random samples drawn")
    report.add_argument("--seed", type=int, default=0, help="which random samples")
    report.set_defaults(handler=_cmd_report)

    inspect = sub.add_parser("inspect", help="one sample in the terminal (--open: as a page)")
    inspect.add_argument("image_id")
    _add_catalog_flag(inspect)
    inspect.add_argument("--corpus", help="when several corpora hold the image id")
    inspect.add_argument(
        "--open",
        nargs="?",
        const="",
        metavar="HTML",
        help="also write the sample's page (default: inspect-<id>.html) and open it",
    )
    inspect.set_defaults(handler=_cmd_inspect)

    demo = sub.add_parser("demo", help="build the demo corpus end to end, offline")
    demo.add_argument("--out", default="mmdata-demo", help="folder for everything it writes")
    demo.add_argument("--images", type=int, default=64, help="images to generate")
    demo.add_argument(
        "--train-steps",
        type=int,
        help="steps of the reference trainer's proof run (default: recipes/train_oracle.yaml's "
        "1600, about 90 s); 0 skips training",
    )
    _add_execution_flags(demo, default="ray")
    add_progress_flags(demo, json=False)
    demo.set_defaults(handler=_cmd_demo)

    export = sub.add_parser(
        "export",
        help="write a corpus for other code: region features for LXMERT/UNITER, "
        "webdataset tars, a Hugging Face dataset folder, vokens for the original "
        "Vokenization trainer",
    )
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument(
        "--out",
        required=True,
        help="the .tsv file, or the folder (npz, tars, hf dataset, vokenization hdf5 files)",
    )
    _add_catalog_flag(export)
    export.add_argument(
        "--corpus",
        help="only this corpus (default: every corpus; webdataset, hf and vokenization-hdf5 "
        "need one)",
    )
    export.add_argument("--extractor", help="only regions of this extractor id")
    export.add_argument(
        "--unit",
        choices=("image", "caption"),
        help="webdataset: one sample per image, .txt its first caption (the default), or one "
        "per caption, the image repeated (what CLIP training wants)",
    )
    export.add_argument(
        "--layer", help="vokenization-hdf5: the corpus's vokens layer (a vokenize stage's)"
    )
    export.add_argument(
        "--vokenizer",
        help="vokenization-hdf5: the saved vokenizer folder that vokenized the layer (its "
        "vocab.txt gives the token ids)",
    )
    add_progress_flags(export)
    export.set_defaults(handler=_cmd_export)

    # commands that live outside mmdata's core (mmdata.train) come through entry points,
    # so mmdata never imports them directly
    for entry in entry_points(group="mmdata.commands"):
        entry.load()(sub)

    sg_eval = sub.add_parser(
        "sg-eval", help="score the caption scene-graph parser on FACTUAL gold graphs"
    )
    sg_eval.add_argument(
        "--gold", required=True, help="FACTUAL CSV (image_id,region_id,caption,scene_graph)"
    )
    sg_eval.add_argument("--model", help="spaCy model (default: en_core_web_sm or its re-upload)")
    sg_eval.add_argument("--peer", action="store_true", help="also score sng_parser, side by side")
    sg_eval.add_argument("--limit", type=positive_int, help="score only the first N captions")
    sg_eval.add_argument(
        "--rows",
        type=_rows,
        help="only data rows START:END (0-based, END exclusive; applied before the others)",
    )
    sg_eval.add_argument(
        "--min-words",
        type=positive_int,
        default=0,
        help="only captions of at least N words (8: the long-caption subset)",
    )
    sg_eval.set_defaults(handler=_cmd_sg_eval)
    return parser


def _add_catalog_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        default=os.environ.get(DEFAULT_CATALOG_ENV, "catalog.duckdb"),
        help=f"catalog file (default: ${DEFAULT_CATALOG_ENV} or ./catalog.duckdb)",
    )


def _add_execution_flags(parser: argparse.ArgumentParser, default: str = "ray") -> None:
    parser.add_argument("--executor", choices=("local", "ray"), default=default)
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (default: $RAY_ADDRESS, else embedded Ray)",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from mmdata.engine import recipe as recipes
    from mmdata.engine.run import run_recipe
    from mmdata.report.summary import summarize, summary_dict

    recipe = recipes.load(args.recipe)
    result = run_recipe(
        recipe, args.executor, args.address, args.catalog, progress=progress_mode(args)
    )
    print(json.dumps(summary_dict(result), default=str) if args.json else summarize(result))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from mmdata.engine import recipe as recipes

    try:
        recipe = recipes.load(args.recipe)
    except recipes.RecipeError as exc:
        print(exc, file=sys.stderr)
        return 1
    steps = " -> ".join(recipe.step_names)
    what = (
        f"corpus {recipe.name!r}"
        if recipe.layer_of is None
        else f"layer {recipe.name!r} of corpus {recipe.layer_of!r}"
    )
    print(f"{args.recipe}: ok: {what}: {steps}; output {recipe.output}; catalog {recipe.catalog}")
    return 0


def _cmd_stages(args: argparse.Namespace) -> int:
    from mmdata.core.args import arg_specs
    from mmdata.core.registry import SOURCES, STAGES, import_modules, load_builtin

    load_builtin()
    import_modules(args.imports)
    for title, registry in (("sources", SOURCES), ("stages", STAGES)):
        print(f"{title}:")
        for name in registry.names():
            cls = registry.get(name)
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            print(f"  {name}: {doc}")
            if getattr(cls, "reads", ()):
                print(f"    reads:  {', '.join(cls.reads)}")
            print(f"    writes: {', '.join(cls.writes) or '-'}")
            for spec in arg_specs(cls):
                print(f"    - {spec.describe()}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from mmdata.catalog.store import Catalog
    from mmdata.commands.check import check
    from mmdata.core.tables import format_rows

    progress = "quiet" if args.quiet or args.json else "bar"
    report = check(Catalog(args.catalog), args.corpus, hashes=not args.no_hash, progress=progress)
    if args.json:
        rows = [(p.corpus, p.kind, p.path, p.detail) for p in report.problems]
        print(format_rows(["corpus", "problem", "path", "detail"], rows, "json"))
        return 1 if report.problems else 0
    for p in report.problems:  # one whole line each: paths are what a user acts on
        print(f"{p.kind:10s}  {p.corpus}  {p.path}: {p.detail}")
    verdict = f"{len(report.problems)} problem(s)" if report.problems else "ok"
    print(f"{report.shards} listed shard files and {report.files} files checked: {verdict}")
    return 1 if report.problems else 0


def _cmd_retry(args: argparse.Namespace) -> int:
    from mmdata.engine.retry import retry_corpus, retry_dict, summarize_retry

    result = retry_corpus(
        args.catalog,
        args.corpus,
        args.reasons.split(","),
        recipe_path=args.recipe,
        progress=progress_mode(args),
    )
    print(json.dumps(retry_dict(result)) if args.json else summarize_retry(result))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from mmdata.report import build_report

    out = args.out or f"report-{args.corpus}.html"
    path = build_report(args.catalog, args.corpus, out, samples=args.samples, seed=args.seed)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    import re
    import webbrowser

    from mmdata.report.inspect import inspect

    page = None
    if args.open is not None:
        page = args.open or "inspect-" + re.sub(r"[^\w.-]+", "_", args.image_id) + ".html"
    written = inspect(args.catalog, args.image_id, args.corpus, page)
    if written is not None:
        print(f"wrote {written}")
        webbrowser.open(written.resolve().as_uri())  # quietly nothing on a headless host
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from mmdata.catalog.store import Catalog
    from mmdata.core.tables import format_rows

    columns, rows = Catalog(args.catalog).user_query(args.query)
    print(format_rows(columns, rows, args.format))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from mmdata.core.errors import MmdataError

    progress = progress_mode(args)
    extra: dict = {}
    if args.unit and args.format != "webdataset":
        raise MmdataError("--unit is for --format webdataset")
    for flag in ("layer", "vokenizer"):
        if getattr(args, flag) and args.format != "vokenization-hdf5":
            raise MmdataError(f"--{flag} is for --format vokenization-hdf5")
    if args.format == "vokenization-hdf5":
        from mmdata.exports.vokenization import export_vokenization

        missing = [f"--{f}" for f in ("corpus", "layer", "vokenizer") if not getattr(args, f)]
        if missing:
            raise MmdataError(f"--format vokenization-hdf5 needs {' '.join(missing)}")
        count = export_vokenization(
            args.catalog, args.corpus, args.layer, args.vokenizer, args.out, progress
        )
        unit = "tokens"
        said = (
            f"{count} tokens of layer {args.layer} written to {args.out} (the original "
            "Vokenization trainer's hdf5 files; docs/vokenization.md section 6)"
        )
    elif args.format in ("webdataset", "hf"):
        from mmdata.exports.interop import export_hf, export_webdataset
        from mmdata.stream.shards import StreamError

        if not args.corpus:
            raise StreamError(f"--format {args.format} needs --corpus")
        if args.format == "hf":
            count, unit = export_hf(args.catalog, args.corpus, args.out, progress), "shards"
            said = f"{count} shards in {args.out}: datasets.load_dataset({str(args.out)!r})"
        else:
            from mmdata.exports.interop import webdataset_urls

            per = args.unit or "image"
            count = export_webdataset(args.catalog, args.corpus, args.out, progress, per)
            urls = webdataset_urls(args.out, args.corpus)
            extra = {"unit": per, "train_data": urls}
            unit = "samples"
            said = (
                f"{count} samples (one per {per}) written to {args.out} (webdataset tars and "
                f"sizes.json); OpenCLIP: --train-data '{urls}' --dataset-type webdataset"
            )
    else:
        from mmdata.exports.regions import export_regions

        count = export_regions(
            args.catalog, args.out, args.format, args.corpus, args.extractor, progress
        )
        unit, said = "images", f"{count} images written to {args.out} ({args.format})"
    if args.json:
        summary = {"event": "summary", "format": args.format, "out": str(args.out), unit: count}
        print(json.dumps({**summary, **extra}))
    else:
        print(said)
    return 0


def _rows(text: str) -> slice:
    """argparse type of ``--rows START:END``."""
    from mmdata.models.scenegraph.evaluate import parse_rows  # imports spaCy: only when given

    try:
        return parse_rows(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_sg_eval(args: argparse.Namespace) -> int:
    from mmdata.core.errors import MmdataError
    from mmdata.models.scenegraph import evaluate as ev
    from mmdata.models.scenegraph import factual_eval

    golds = ev.select(ev.load_factual(args.gold), args.rows, args.min_words, args.limit)
    if not golds:
        raise MmdataError(f"{args.gold}: no caption left to score after --rows/--min-words")
    graphs, lemmatiser = ev.parse_graphs(golds, args.model, args.peer)
    print("mmdata's scorer (SPICE-style tuple micro F1, one spaCy lemmatiser for all words)")
    print(ev.format_report({k: ev.evaluate(g, golds, lemmatiser) for k, g in graphs.items()}))
    reason = factual_eval.unavailable()
    if reason:  # the package or WordNet is missing: say how to get them, keep our figures
        print(f"FACTUAL's SPICE / Set Match: not scored: {reason}")
        return 0
    print(
        factual_eval.format_factual(
            {k: factual_eval.factual_scores(g, golds) for k, g in graphs.items()}
        )
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from mmdata.demo.command import run_demo

    return run_demo(args, main)


if __name__ == "__main__":
    sys.exit(main())

"""``mmdata demo``: the whole pipeline end to end on generated data, offline."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from mmdata.core.flags import progress_mode
from mmdata.demo import data as demo
from mmdata.demo import oracle as demo_oracle
from mmdata.demo import web as demo_web

DEMO_QUERIES = [
    (
        "images per corpus, with size",
        "SELECT corpus, count(*) AS images, round(avg(width_px)) AS avg_width_px, "
        "round(avg(height_px)) AS avg_height_px FROM images GROUP BY corpus ORDER BY corpus",
    ),
    ("a few captions", "SELECT image_id, text FROM captions ORDER BY image_id, caption_id LIMIT 5"),
    (
        "rows in and out of every step of the web part",
        "SELECT step_index, stage, rows_in, rows_out FROM stage_summary "
        "WHERE corpus = 'demo_web' ORDER BY step_index",
    ),
    (
        "rejects by corpus and reason",
        "SELECT corpus, stage, reason, count(*) AS n FROM rejects "
        "GROUP BY ALL ORDER BY corpus, stage, reason",
    ),
    (
        "detected regions: the most frequent classes (random weights: names mean nothing yet)",
        "SELECT cls_name, count(*) AS boxes, round(avg(cls_conf), 3) AS avg_conf "
        "FROM region_boxes GROUP BY cls_name ORDER BY boxes DESC, cls_name LIMIT 5",
    ),
    (
        "why each web image was rejected",
        "SELECT image_id, reason, detail FROM rejects WHERE corpus = 'demo_web' "
        "AND item_kind IS NULL ORDER BY image_id",
    ),
]


def run_demo(args: argparse.Namespace, run_command: Callable[[list[str]], int]) -> int:
    """``mmdata demo``: generate, run both demo recipes, show queries and reports, and
    train (through ``run_command``, the CLI's entry, which knows the train command)."""
    from mmdata.catalog.store import Catalog
    from mmdata.core.tables import format_rows
    from mmdata.report.summary import summarize

    out = Path(args.out).resolve()
    demo.generate(out / "data", num_images=args.images)
    weights = demo.random_butd_weights(out / "models" / "butd_r101_c4_vg_random.pkl")
    print(
        f"regions: no detector weights can be downloaded here, so the demo saved a RANDOMLY "
        f"initialised butd-r101-c4-vg ({weights}): its features, classes and attributes are "
        "noise. For real ones, set `weights:` in the regions stage of the recipe to "
        "py-bottom-up-attention's faster_rcnn_from_caffe_attr.pkl (see README)."
    )
    result = _run_demo_recipe("demo", out, args)
    print(summarize(result))
    with demo_web.serving(out / "data"):
        web = _run_demo_recipe("demo_web", out, args)
    print(summarize(web))
    catalog = Catalog(result.catalog)
    for title, query in DEMO_QUERIES:
        print(f'\n-- {title}\n$ mmdata sql "{query}" --catalog {catalog.path}')
        print(format_rows(*catalog.query(query)))
    from mmdata.report import build_report

    reports = [
        build_report(catalog.path, corpus, out / f"report-{corpus}.html")
        for corpus in (result.corpus, web.corpus)
    ]
    print(f"\nreports (open in a browser): {', '.join(str(r) for r in reports)}")
    if args.train_steps != 0:
        _demo_train(out, str(catalog.path), args.train_steps, args.quiet, run_command)
    print(
        f"\nrecipes: {out / 'demo.yaml'}, {out / 'demo_web.yaml'} (run `mmdata demo` again: "
        "it finds every shard done and adds nothing)"
    )
    return 0


def _demo_train(
    out: Path, catalog: str, steps: int | None, quiet: bool, run_command: Callable[[list[str]], int]
) -> None:
    """The trainer's proof that it learns: corpus demo_oracle (the demo's scenes with
    oracle gold-box features, as a trained detector would give) added to the catalog, and
    recipes/train_oracle.yaml trained on it through the `train` command that mmdata.train
    adds by entry point (mmdata never imports mmdata.train)."""
    if "train" not in {entry.name for entry in entry_points(group="mmdata.commands")}:
        print("\ntrain: the mmdata.train commands are not installed (pip install -e .)")
        return
    demo_oracle.build(catalog, out / "oracle")
    config = demo_recipe_path("train_oracle")
    argv = ["train", str(config), "--catalog", catalog, "--corpus", demo_oracle.CORPUS]
    argv += ["--out", str(out / "train"), *(["--steps", str(steps)] if steps else [])]
    argv += ["-q"] if quiet else []
    print(
        f"\n-- train: the demo's detector weights are random, so its regions carry almost no "
        f"signal; the trainer's proof runs on corpus {demo_oracle.CORPUS} instead (the same "
        f"scenes, oracle gold-box features)\n$ mmdata {' '.join(argv)}"
    )
    run_command(argv)
    summary = json.loads((out / "train" / "summary.json").read_text(encoding="utf-8"))
    images = summary.get("eval_images") or 0
    if images:
        print(
            f"held-out, {images} images: ITM accuracy {summary['itm_acc']:.2f} (chance 0.50); "
            f"R@1 text->image {summary['r1_t2i']:.2f}, image->text {summary['r1_i2t']:.2f} "
            f"(chance {1 / images:.3f}); R@5 text->image {summary['r5_t2i']:.2f}"
        )


def _run_demo_recipe(name: str, out: Path, args: argparse.Namespace):  # noqa: ANN202
    """Expand recipes/<name>.yaml for ``out``, save it as out/<name>.yaml, run it."""
    from mmdata.engine import recipe as recipes
    from mmdata.engine.run import run_recipe

    template = demo_recipe_path(name).read_text(encoding="utf-8")
    expanded = recipes.expand(template, {"DEMO_DIR": str(out)}, problems := [])
    if problems:
        raise recipes.RecipeError(str(demo_recipe_path(name)), problems)
    (out / f"{name}.yaml").write_text(expanded, encoding="utf-8")
    recipe = recipes.load(out / f"{name}.yaml")
    return run_recipe(recipe, args.executor, args.address, progress=progress_mode(args))


def demo_recipe_path(name: str = "demo") -> Path:
    """recipes/<name>.yaml as shipped with the package."""
    import importlib.resources

    return Path(str(importlib.resources.files("mmdata.recipes") / f"{name}.yaml"))

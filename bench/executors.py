"""Throughput of the demo recipe on the local and the Ray executor, side by side.

    python bench/executors.py [--images 512] [--shard-rows 64]

Prints rows/s for each executor and the ratio ray/local. Both runs read the same
generated input and write to separate catalogs, in this one process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from mmdata.catalog.store import Catalog
from mmdata.demo import data as demo
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe


def _recipe(data: dict[str, str], out: Path, shard_rows: int) -> recipes.Recipe:
    text = {
        "name": "bench",
        "source": {
            "coco": {
                "captions": data["captions"],
                "instances": data["instances"],
                "images": data["images"],
            }
        },
        "stages": [
            {"read_images": {}},
            {"image_size_filter": {"min_side_px": 64, "max_aspect_ratio": 4.0}},
            {"caption_filter": {"min_words": 3}},
        ],
        "output": str(out / "corpus"),
        "catalog": str(out / "catalog.duckdb"),
        "shard_rows": shard_rows,
    }
    path = out / "recipe.yaml"
    out.mkdir(parents=True)
    path.write_text(yaml.safe_dump(text))
    return recipes.load(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--shard-rows", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = demo.generate(Path(tmp) / "data", num_images=args.images)
        import ray

        ray.init(include_dashboard=False, configure_logging=False)  # start-up not timed
        figures = {}
        for executor in ("local", "ray"):
            recipe = _recipe(data, Path(tmp) / executor, args.shard_rows)
            started = time.perf_counter()
            run_recipe(recipe, executor, progress=False)
            seconds = time.perf_counter() - started
            rows = Catalog(recipe.catalog).query("SELECT count(*) FROM images")[1][0][0]
            figures[executor] = args.images / seconds
            print(
                f"{executor:5s}: {args.images} input rows, {rows} kept, {seconds:.2f} s, "
                f"{figures[executor]:.0f} rows/s"
            )
        print(f"ratio ray/local: {figures['ray'] / figures['local']:.2f}")


if __name__ == "__main__":
    main()

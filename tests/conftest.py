"""Shared fixtures: one Ray session, the generated demo corpus, recipe writing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from mmdata.demo import data as demo

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # img2dataset's dependency phones home
DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
# Ray workers and CLI subprocesses inherit the environment: let them import tests.*
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for every test marked ``ray`` (starting one costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def demo_out(tmp_path_factory: pytest.TempPathFactory, ray_session) -> Path:
    """`mmdata demo` as the README runs it (Ray executor), once per session; its training
    run is cut to 8 steps here (tests/train/test_loop.py runs the whole proof)."""
    from mmdata.commands.cli import main

    out = tmp_path_factory.mktemp("cli") / "mmdata-demo"
    assert main(["demo", "--out", str(out), "-q", "--train-steps", "8"]) == 0
    return out


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The demo's generated COCO-format corpus (64 images, 6 broken on purpose)."""
    return demo.generate(tmp_path_factory.mktemp("demo") / "data", num_images=64)


def demo_recipe(demo_data: dict[str, str], out: Path, **overrides) -> dict:
    """The demo recipe as a dict, writing under ``out``."""
    recipe = {
        "name": "demo",
        "source": {
            "coco": {
                "captions": demo_data["captions"],
                "instances": demo_data["instances"],
                "images": demo_data["images"],
                "split": "train",
            }
        },
        "stages": [
            {"read_images": {"keep_bytes": True}},
            {"image_size_filter": {"min_side_px": 64, "max_aspect_ratio": 4.0}},
            {"caption_filter": {"min_words": 3, "max_words": 40}},
        ],
        "output": str(out / "corpus"),
        "catalog": str(out / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 16,
    }
    recipe.update(overrides)
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def import_only(tmp_path: Path, name: str, source: dict, shard_rows: int):
    """Run a recipe of just ``source`` (no stages) locally; returns the catalog it wrote."""
    from mmdata.catalog.store import Catalog
    from mmdata.engine import recipe as recipes
    from mmdata.engine.run import run_recipe

    spec = {
        "name": name,
        "source": source,
        "stages": [],
        "output": str(tmp_path / "corpus"),
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": shard_rows,
    }
    recipe = recipes.load(write_recipe(tmp_path / f"{name}.yaml", spec))
    run_recipe(recipe, "local", progress=False)
    return Catalog(recipe.catalog)

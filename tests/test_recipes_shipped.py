"""Every recipe in recipes/ validates and reads real samples once its variables are set."""

from pathlib import Path

import pytest

from mmdata.demo import data as demo
from mmdata.demo import web as demo_web
from mmdata.engine import recipe as recipes
from tests.conftest import DATA, ROOT

# recipes/train_*.yaml are training configs (mmdata train), not recipes
RECIPES = sorted(p for p in (ROOT / "recipes").glob("*.yaml") if not p.stem.startswith("train_"))
TRAIN_CONFIGS = sorted((ROOT / "recipes").glob("train_*.yaml"))
VG_FILES = {
    "image_data.json": "image_data.json",
    "objects.json": "objects_v1_2.json",
    "attributes.json": "attributes.json",
    "relationships.json": "relationships_v1_2.json",
    "region_descriptions.json": "region_descriptions.json",
}


def _copy(folder: Path, files: dict[str, Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        (folder / name).write_bytes(src.read_bytes())
    return folder


def _layout(tmp_path: Path) -> dict[str, str]:
    """Folders in the layouts the recipes document, filled with the real test samples."""
    coco = tmp_path / "coco"
    _copy(
        coco / "annotations",
        {"captions_train2017.json": DATA / "coco" / "coco_captions_val2017_excerpt.json"},
    )
    (coco / "train2017").mkdir()
    vg = _copy(
        tmp_path / "vg",
        {k: DATA / "visual_genome" / "v1.2_first5images" / v for k, v in VG_FILES.items()},
    )
    (vg / "images").mkdir()
    flickr = _copy(
        tmp_path / "flickr30k",
        {
            "results_20130124.token": DATA / "flickr30k" / "results_20130124_first10.token",
            "dataset_flickr30k.json": DATA / "flickr30k" / "dataset_flickr30k_first_record.json",
        },
    )
    (flickr / "flickr30k-images").mkdir()
    demo.generate(tmp_path / "demo" / "data", num_images=4)
    demo_web.write_url_list(tmp_path / "demo" / "data", "http://127.0.0.1:8000")
    (tmp_path / "demo" / "models").mkdir()
    (tmp_path / "demo" / "models" / "butd_r101_c4_vg_random.pkl").touch()  # `mmdata demo` saves it
    (tmp_path / "demo" / "vokenizer").mkdir()  # `mmdata train-vokenizer --out` makes it
    (tmp_path / "demo" / "catalog.duckdb").touch()  # `mmdata demo` makes it
    return {
        "COCO_DIR": str(coco),
        "VG_DIR": str(vg),
        "FLICKR30K_DIR": str(flickr),
        "OUT_DIR": str(tmp_path / "out"),
        "DEMO_DIR": str(tmp_path / "demo"),
        "CC3M_TSV": str(DATA / "cc3m" / "cc3m_train_GCC-training_first5.tsv"),
        "CC12M_TSV": str(DATA / "cc12m" / "cc12m_first5.tsv"),
        "SBU_JSON": str(DATA / "sbu" / "sbu-captions-all_first5.json"),
        "URL_LIST": str(DATA / "url_list" / "img2dataset_tests_test_1000_laion_style.parquet"),
    }


def test_every_source_has_a_recipe():
    names = {p.stem for p in RECIPES}
    expected = {"demo", "demo_web", "coco", "vg", "cc3m", "cc12m", "sbu", "url_list", "flickr30k"}
    assert expected | {"laion_style"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_and_reads(path, tmp_path):
    variables = _layout(tmp_path)
    if path.stem == "coco":  # the instances sample is of another image: leave it out
        text = "\n".join(line for line in path.read_text().splitlines() if "instances" not in line)
    else:
        text = path.read_text()
    recipe = recipes.parse(text, str(path), path.parent, variables)
    if recipe.layer_of:  # a layer of a corpus the demo builds: validated, its input is a corpus
        assert recipe.layer_schema is not None and recipe.stages
        return
    source = recipe.build_source()
    partitions = source.partitions(recipe.shard_rows)
    assert partitions and source.read(partitions[0]).num_rows > 0


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.stem)
def test_training_configs_load(path):
    if path.stem.startswith("train_vokenizer"):  # mmdata train-vokenizer's configs
        from mmdata.train.vokenizer import load_training

        assert load_training(path).epochs > 0
        return
    from mmdata.train.config import load_config

    config = load_config(path)
    assert config.enabled and config.optim.steps > 0

"""Vokenizing a corpus as layers: voken_keys, vokenize, and the voken views."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import mmdata.recipes as shipped
import pytest
import yaml

from mmdata.catalog.store import Catalog
from mmdata.commands.cli import main
from mmdata.demo import oracle as demo_oracle
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from mmdata.models.vokens import revokenize
from mmdata.stages.vokenize import Vokenize
from mmdata.train.vokenizer import load_training, train_vokenizer
from tests.conftest import write_recipe

SHIPPED = Path(shipped.__file__).parent
CONFIG = SHIPPED / "train_vokenizer_demo.yaml"


@pytest.fixture(scope="module")
def vokenized(tmp_path_factory) -> dict:
    """The shipped workflow on a small demo folder: demo_oracle (96 images), a vokenizer
    trained for 2 epochs (recipes/train_vokenizer_demo.yaml), then the layers of
    recipes/voken_keys_demo.yaml and recipes/vokenize_demo.yaml, run locally."""
    root = tmp_path_factory.mktemp("vokenize")
    catalog = root / "catalog.duckdb"
    demo_oracle.build(catalog, root / "oracle", images=96)
    config = load_training(CONFIG)
    config.epochs = 2
    summary = train_vokenizer(config, str(catalog), demo_oracle.CORPUS, root / "vokenizer")
    for name in ("voken_keys_demo", "vokenize_demo"):
        path = SHIPPED / f"{name}.yaml"
        recipe = recipes.parse(path.read_text(), str(path), SHIPPED, {"DEMO_DIR": str(root)})
        run_recipe(recipe, "local", progress=False)
    return {"root": root, "catalog": catalog, "id": summary["vokenizer_id"]}


def _vokenize_args(root: Path, **extra) -> dict:
    return {
        "vokenizer": str(root / "vokenizer"),
        "keys_catalog": str(root / "catalog.duckdb"),
        "keys_layer": "voken_keys",
        "device": "cpu",
        **extra,
    }


def _layer(root: Path, name: str, stage: dict) -> recipes.Recipe:
    spec = {
        "name": name,
        "layer_of": demo_oracle.CORPUS,
        "stages": [stage],
        "output": str(root / name),
        "catalog": str(root / "catalog.duckdb"),
    }
    return recipes.load(write_recipe(root / f"{name}.yaml", spec))


def test_the_voken_set_is_every_image_with_a_key(vokenized):
    catalog = Catalog(vokenized["catalog"])
    _, rows = catalog.query(
        "SELECT layer, vokenizer_id, count(*), min(voken_id), max(voken_id) FROM voken_set "
        "GROUP BY ALL"
    )
    images = catalog.query("SELECT count(*) FROM images WHERE corpus = 'demo_oracle'")[1][0][0]
    assert rows == [("voken_keys", vokenized["id"], images, 0, images - 1)]


def test_every_token_has_its_voken_and_its_span(vokenized):
    catalog = Catalog(vokenized["catalog"])
    _, rows = catalog.query(
        "SELECT v.token, c.text, v.span_start, v.span_end, v.voken_id, v.score, v.vokenizer_id "
        "FROM vokens v JOIN captions c USING (corpus, image_id, caption_id)"
    )
    _, captions = catalog.query("SELECT count(*) FROM captions WHERE corpus = 'demo_oracle'")
    assert len(rows) >= 3 * captions[0][0]  # every caption has a few tokens
    size = catalog.query("SELECT count(*) FROM voken_set")[1][0][0]
    for token, text, start, end, voken, score, ident in rows:
        assert text[start:end].lower() == token.removeprefix("##")
        assert 0 <= voken < size and -1.0 <= score <= 1.0 and ident == vokenized["id"]
    _, stats = catalog.query(
        "SELECT tokens, token_types, vokens_used, voken_set_size, coverage, "
        "vokens_per_token_type FROM voken_stats"
    )
    tokens, types, used, set_size, coverage, per_type = stats[0]
    assert tokens == len(rows) and set_size == size and 0 < coverage <= 1
    assert coverage == pytest.approx(used / size) and 1 <= per_type <= used and types > 5


def test_the_best_voken_is_the_first_of_the_top_k_and_revokenizing_is_the_identity(vokenized):
    _, rows = Catalog(vokenized["catalog"]).query(
        'SELECT unnest(vokens) FROM "layer_vokens" WHERE vokens IS NOT NULL'
    )
    for (caption,) in rows:
        assert [top[0] for top in caption["topk_ids"]] == caption["voken_ids"]
        assert all(len(top) == 5 for top in caption["topk_ids"])
        spans = list(zip(caption["starts"], caption["ends"]))
        assert revokenize(spans, caption["voken_ids"], spans) == caption["voken_ids"]


def test_long_texts_are_cut_into_segments_and_joined_back(vokenized):
    stage = Vokenize(**_vokenize_args(vokenized["root"], upper_bound=4))
    stage.setup()
    pieces = stage._tokenizer.encode("a red circle and a blue square and a green one", 99)[0]
    assert len(pieces) > 8
    (whole,) = stage.vokenize_pieces([pieces])
    assert len(whole[0]) == len(pieces)
    from mmdata.models.vokens import segments

    for start, stop in segments(len(pieces), 4):  # each segment is encoded on its own
        (alone,) = stage.vokenize_pieces([pieces[start:stop]])
        assert whole[0][start:stop] == alone[0]


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="needs faiss-cpu")
def test_faiss_gives_the_same_vokens_as_exact_search(vokenized):
    root = vokenized["root"]
    stage = {"vokenize": _vokenize_args(root, topk=5, backend="faiss")}
    run_recipe(_layer(root, "vokens_faiss", stage), "local", progress=False)
    _, exact = Catalog(vokenized["catalog"]).query(
        'SELECT image_id, vokens FROM "layer_vokens" ORDER BY image_id'
    )
    _, faiss = Catalog(vokenized["catalog"]).query(
        'SELECT image_id, vokens FROM "layer_vokens_faiss" ORDER BY image_id'
    )
    assert exact == faiss


@pytest.mark.ray
def test_ray_writes_the_same_vokens_as_the_local_executor(vokenized, ray_session):
    root = vokenized["root"]
    run_recipe(
        _layer(root, "vokens_ray", {"vokenize": _vokenize_args(root, topk=5)}),
        "ray", progress=False,
    )  # fmt: skip

    def digests(layer: str) -> list[str]:
        _, paths = Catalog(vokenized["catalog"]).query(
            "SELECT path FROM shards WHERE layer = ? ORDER BY shard_index", [layer]
        )
        return [hashlib.sha256(Path(p).read_bytes()).hexdigest() for (p,) in paths]

    assert digests("vokens_ray") == digests("vokens")


def _voken_training(root: Path, ablation: str) -> dict:
    config = {
        "model": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128, "dropout": 0.0,
                  "max_text_tokens": 24, "max_regions": 8, "num_classes": 8},
        "optim": {"lr": 0.002, "warmup_steps": 10, "steps": 150, "batch_size": 16},
        "eval": {"fraction": 0.25},
        "objectives": {"voken_cls": 1.0},
        "vokens": {"layer": "vokens", "ablation": ablation},
        "vocab_size": 200,
        "shuffle_buffer": 200,
        "checkpoint_every": 1000,
    }  # fmt: skip
    path = root / f"voken_cls_{ablation}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["train", str(path), "--catalog", str(root / "catalog.duckdb")]
    args += ["--corpus", demo_oracle.CORPUS, "--out", str(root / f"train_{ablation}"), "-q"]
    assert main(args) == 0
    return json.loads((root / f"train_{ablation}" / "summary.json").read_text())


def test_voken_classification_learns_the_vokens_and_not_random_ones(vokenized):
    """Issue 21, item 7: voken_cls drives its loss well below log(voken set size); with
    random vokens (Vokenization's ablation) it cannot."""
    real = _voken_training(vokenized["root"], "none")
    chance = math.log(real["voken_classes"])
    assert real["voken_classes"] == 96 and real["loss_voken_mlm"] is not None
    assert real["loss_voken_cls"] < 0.5 * chance, real
    random_vokens = _voken_training(vokenized["root"], "random")
    assert random_vokens["loss_voken_cls"] > 0.9 * chance, random_vokens

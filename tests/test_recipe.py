from pathlib import Path

import pytest

from mmdata.engine import recipe as recipes
from tests.conftest import demo_recipe, write_recipe


def test_demo_recipe_in_the_repo_validates(demo_data, tmp_path):
    from mmdata.demo.command import demo_recipe_path

    text = demo_recipe_path().read_text()
    demo_dir = tmp_path / "demo"
    (demo_dir / "models").mkdir(parents=True)
    (demo_dir / "models" / "butd_r101_c4_vg_random.pkl").touch()  # `mmdata demo` saves it
    (demo_dir / "data").symlink_to(Path(demo_data["captions"]).parent)
    recipe = recipes.parse(text, "demo.yaml", tmp_path, {"DEMO_DIR": str(demo_dir)})
    assert recipe.step_names == [
        "coco",
        "read_images",
        "image_size_filter",
        "caption_filter",
        "scene_graph",
        "regions",
    ]
    assert recipe.output == str(demo_dir / "corpus")
    assert recipe.shard_rows == 16


def test_relative_paths_resolve_against_the_recipe_folder(demo_data, tmp_path):
    recipe = write_recipe(
        tmp_path / "r" / "recipe.yaml",
        demo_recipe(demo_data, tmp_path, output="out", catalog="c.duckdb"),
    )
    loaded = recipes.load(recipe)
    assert loaded.output == str(tmp_path / "r" / "out")
    assert loaded.catalog == str(tmp_path / "r" / "c.duckdb")


def _problems(tmp_path, recipe: dict) -> list[str]:
    with pytest.raises(recipes.RecipeError) as info:
        recipes.load(write_recipe(tmp_path / "recipe.yaml", recipe))
    return info.value.problems


def test_every_error_is_reported_at_once(demo_data, tmp_path):
    recipe = demo_recipe(demo_data, tmp_path, on_error="ignore", shard_rows=0, colour="red")
    recipe["stages"] = [
        {"read_imagez": {}},
        {"image_size_filter": {"min_side": 64}},
        {"caption_filter": {"min_words": "three"}},
    ]
    problems = "\n".join(_problems(tmp_path, recipe))
    assert "unknown key 'colour'" in problems
    assert "on_error must be one of ['raise', 'record']" in problems
    assert "shard_rows must be a positive integer" in problems
    assert "unknown stage 'read_imagez'; registered stages: caption_filter" in problems
    assert "unknown argument 'min_side'" in problems and "min_side_px: int = 0" in problems
    assert "'min_words' must be an integer" in problems


def test_a_column_no_earlier_step_provides(demo_data, tmp_path):
    recipe = demo_recipe(demo_data, tmp_path, imports=["tests.plugin_stages"])
    recipe["stages"] = [{"test_needs_phash": {}}]
    (problem,) = _problems(tmp_path, recipe)
    assert "test_needs_phash reads ['phash']" in problem
    assert "available: ['captions'" in problem


def test_missing_input_file_and_bad_values(demo_data, tmp_path):
    recipe = demo_recipe(demo_data, tmp_path)
    recipe["source"]["coco"]["captions"] = str(tmp_path / "nope.json")
    recipe["stages"] = [{"image_size_filter": {"max_aspect_ratio": 0.5}}]
    problems = "\n".join(_problems(tmp_path, recipe))
    assert f"{tmp_path / 'nope.json'}, which does not exist" in problems
    assert "max_aspect_ratio must be >= 1" in problems


def test_names_cannot_traverse_paths(demo_data, tmp_path):
    problems = _problems(tmp_path, demo_recipe(demo_data, tmp_path, name="../evil"))
    assert any("name '../evil'" in p for p in problems)


def test_outputs_outside_the_allowed_root_are_refused(demo_data, tmp_path, monkeypatch):
    root = tmp_path / "allowed"
    (root / "inside").mkdir(parents=True)
    (root / "escape").symlink_to(tmp_path)  # a symlink out of the root
    monkeypatch.setenv("MMDATA_OUTPUT_ROOT", f"{root},s3://bucket/team")
    ok = demo_recipe(demo_data, root / "inside")
    assert recipes.load(write_recipe(tmp_path / "ok.yaml", ok)).output == str(
        root / "inside" / "corpus"
    )
    remote = demo_recipe(demo_data, root, output="s3://bucket/team/corpus")
    assert recipes.load(write_recipe(tmp_path / "s3.yaml", remote)).output.startswith("s3://")
    for key, value in [
        ("output", str(root / ".." / "corpus")),
        ("output", "../../../../etc/mmdata"),
        ("catalog", str(root / "escape" / "catalog.duckdb")),
        ("output", "s3://bucket/team/../other/corpus"),
        ("output", "s3://bucket/teammate/corpus"),
        ("output", "/tmp"),
    ]:
        bad = demo_recipe(demo_data, root / "inside", **{key: value})
        problems = _problems(tmp_path, bad)
        assert len(problems) == 1 and problems[0].startswith(f"{key} "), (value, problems)
        assert "outside the allowed output roots" in problems[0]


def test_undefined_variable_and_bad_yaml(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: x\nsource:\n  coco:\n    captions: ${NOPE_NOT_SET}/c.json\noutput: o\ncatalog: c\n"
    )
    with pytest.raises(recipes.RecipeError, match=r"undefined variable \$\{NOPE_NOT_SET\}"):
        recipes.load(path)
    path.write_text("name: [unclosed\n")
    with pytest.raises(recipes.RecipeError, match="not valid YAML"):
        recipes.load(path)
    with pytest.raises(recipes.RecipeError, match="cannot read recipe"):
        recipes.load(tmp_path / "missing.yaml")


def test_content_hash_follows_what_decides_the_rows(demo_data, tmp_path):
    a = recipes.load(write_recipe(tmp_path / "a.yaml", demo_recipe(demo_data, tmp_path)))
    b = recipes.load(write_recipe(tmp_path / "b.yaml", demo_recipe(demo_data, tmp_path)))
    c = recipes.load(
        write_recipe(tmp_path / "c.yaml", demo_recipe(demo_data, tmp_path, shard_rows=8))
    )
    assert a.content_hash == b.content_hash != c.content_hash


def test_custom_ray_resources_of_a_stage(demo_data, tmp_path):
    recipe = demo_recipe(demo_data, tmp_path)
    recipe["stages"][1]["image_size_filter"]["resources"] = {
        "custom": {"nodeB": 1, "accelerator_x": 0.25},
        "batch_size": 8,
    }
    loaded = recipes.load(write_recipe(tmp_path / "pinned.yaml", recipe))
    res = loaded.stages[1].resources
    assert res.custom == {"nodeB": 1, "accelerator_x": 0.25}
    assert (res.batch_size, res.num_cpus) == (8, 1.0)  # the other keys keep working
    assert loaded.stages[0].resources.custom == {}
    recipe["stages"][1]["image_size_filter"]["resources"] = {"custom": None}  # none
    cleared = recipes.load(write_recipe(tmp_path / "cleared.yaml", recipe))
    assert cleared.stages[1].resources.custom == {}
    plain = recipes.load(write_recipe(tmp_path / "plain.yaml", demo_recipe(demo_data, tmp_path)))
    assert plain.content_hash == cleared.content_hash != loaded.content_hash


def test_custom_resources_must_map_names_to_positive_numbers(demo_data, tmp_path):
    recipe = demo_recipe(demo_data, tmp_path)
    stages = recipe["stages"]
    stages[0]["read_images"]["resources"] = {"custom": ["nodeB"]}
    stages[1]["image_size_filter"]["resources"] = {
        "custom": {"nodeB": 0, "gpu_node": -1, "tpu": "one", "flag": True, "CPU": 1, "memory": 5}
    }
    stages[2]["caption_filter"]["resources"] = {"custom": {"nodeB": float("nan")}}
    problems = _problems(tmp_path, recipe)
    text = "\n".join(problems)
    assert "stages[0] read_images: resources.custom must be a mapping" in text
    assert "resources.custom.nodeB must be positive, got 0" in text
    assert "resources.custom.gpu_node must be positive, got -1" in text
    assert "resources.custom.tpu: 'one' is not a number" in text
    assert "resources.custom.flag: True is not a number" in text
    assert "'CPU' is Ray's own resource; use resources.num_cpus" in text
    assert "'memory' is Ray's own resource, not a custom one" in text
    assert "stages[2] caption_filter: resources.custom.nodeB must be positive, got nan" in text
    assert len(problems) == 8, problems


def test_the_hash_of_a_recipe_without_custom_resources_is_unchanged(demo_data, tmp_path):
    # Catalogs store the content hash of the recipe that made each corpus: adding the
    # `custom` key must not change the hash of recipes that do not use it.
    import dataclasses
    import hashlib
    import json

    recipe = recipes.load(write_recipe(tmp_path / "a.yaml", demo_recipe(demo_data, tmp_path)))
    before_custom = ("num_cpus", "num_gpus", "batch_size", "concurrency")

    def step(s: recipes.StepSpec) -> dict:
        return {
            **dataclasses.asdict(s),
            "resources": {k: getattr(s.resources, k) for k in before_custom},
        }

    canonical = {
        "source": step(recipe.source),
        "output": recipe.output,
        "stages": [step(s) for s in recipe.stages],
        "on_error": recipe.on_error,
        "shard_rows": recipe.shard_rows,
    }
    blob = json.dumps(canonical, sort_keys=True, default=str).encode()
    assert recipe.content_hash == hashlib.sha256(blob).hexdigest()[:16]


def test_a_plugin_without_process_or_its_package_is_refused_at_validation(demo_data, tmp_path):
    recipe = demo_recipe(demo_data, tmp_path, imports=["tests.plugin_stages"])
    recipe["stages"] = [{"test_forgets_process": {}}, {"test_needs_missing_package": {}}]
    forgot, missing = _problems(tmp_path, recipe)
    assert forgot == "stages[0] test_forgets_process: ForgetsProcess does not implement process"
    assert missing == (
        "stages[1] test_needs_missing_package: needs the mmdata_no_such_package package "
        "(pip install mmdata-no-such-package)"
    )


def test_on_error_outside_a_recipe_is_checked_too():
    import pyarrow as pa

    from mmdata.engine.executors.base import raise_on_errors

    with pytest.raises(ValueError, match="'reject' is not a valid OnError"):
        raise_on_errors(pa.table({"status": ["ok"]}), "step", "reject")

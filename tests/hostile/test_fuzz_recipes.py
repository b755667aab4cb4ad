"""Hostile recipes, fuzzed (hypothesis): the demo recipe with any value replaced by a
wrong type, a huge number, NaN, a path with `..` or NUL, a deep structure, or an unknown
key added. Loading either gives a recipe or a RecipeError naming the recipe file and
listing its problems; nothing else escapes, and with MMDATA_OUTPUT_ROOT set nothing that
loads writes outside it."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdata.engine import recipe as recipes
from tests.conftest import demo_recipe
from tests.hostile.test_fuzz_annotations import _paths, _replace

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([math.inf, -1.0, 0.5, 1e308]),
    st.sampled_from(["", "../../etc", "a\x00b", "x" * 10_000, "${UNDEFINED}", "s3://", "~"]),
    st.lists(st.integers(-2, 2), max_size=3),
    st.dictionaries(st.sampled_from(["a", "name", "read_images"]), st.integers(), max_size=2),
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), value=HOSTILE, add_key=st.booleans())
def test_a_hostile_recipe_loads_or_fails_with_its_problems(
    demo_data, tmp_path_factory, data, value, add_key
):
    folder = tmp_path_factory.mktemp("recipe")
    base: Any = demo_recipe(demo_data, folder)
    path = data.draw(st.sampled_from(_paths(base)))
    spec = _replace(base, path, value)
    if add_key:
        spec = {**spec, "colour": value}  # an unknown top-level key
    file = folder / "recipe.yaml"
    file.write_text(yaml.safe_dump(spec, allow_unicode=True))
    try:
        with _output_root(folder):  # a deployment that pins outputs to the recipe folder
            recipe = recipes.load(file)
    except recipes.RecipeError as exc:
        assert str(file) in str(exc) and exc.problems, str(exc)
    else:  # whatever loads writes nowhere but under the root
        for target in (recipe.output, recipe.catalog):
            assert Path(target).resolve().is_relative_to(folder.resolve()), target


@contextlib.contextmanager
def _output_root(root: Path) -> Iterator[None]:
    old = os.environ.get(recipes.OUTPUT_ROOT_ENV)
    os.environ[recipes.OUTPUT_ROOT_ENV] = str(root)
    try:
        yield
    finally:
        if old is None:
            del os.environ[recipes.OUTPUT_ROOT_ENV]
        else:
            os.environ[recipes.OUTPUT_ROOT_ENV] = old

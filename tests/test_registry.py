import pytest

from mmdata.core.registry import SOURCES, STAGES, Registry, UnknownNameError, load_builtin
from mmdata.core.stage import Stage


def test_unknown_name_lists_registered_names():
    load_builtin()
    with pytest.raises(UnknownNameError) as info:
        STAGES.get("image_sise_filter")
    message = str(info.value)
    assert "image_sise_filter" in message
    for name in ("caption_filter", "image_size_filter", "read_images"):
        assert name in message


def test_sources_come_from_entry_points():
    assert "coco" in SOURCES.names()
    assert SOURCES.get("coco").__module__ == "annotation.coco"


def test_a_name_cannot_be_taken_twice():
    registry: Registry = Registry("thing", "mmdata.tests.none")

    @registry.register("x")
    class First(Stage):
        pass

    with pytest.raises(ValueError, match="already registered"):

        @registry.register("x")
        class Second(Stage):
            pass

    assert registry.get("x") is First

"""Box geometry layouts and the class-index conventions between Caffe, detectron2, LXMERT."""

from __future__ import annotations

import numpy as np
import pytest

from mmdata.models.regions.geometry import LAYOUTS, layout, normalised7, with_geometry
from mmdata.models.regions.vocab import (
    BACKGROUND,
    caffe_to_lxmert,
    detectron2_to_caffe,
    parse_vocabulary,
    vg_vocabulary,
)


def test_geometry_layouts_each_model_family_reads():
    boxes = np.array([[10, 20, 110, 70], [0, 0, 200, 100]], np.float32)
    g = normalised7(boxes, 200, 100)
    assert np.allclose(g[0], [0.05, 0.2, 0.55, 0.7, 0.5, 0.5, 0.25])
    assert np.allclose(g[1], [0, 0, 1, 1, 1, 1, 1])
    assert {name: layout(g, name).shape[1] for name in LAYOUTS} == LAYOUTS
    assert np.allclose(layout(g, "vilbert5")[0], [0.05, 0.2, 0.55, 0.7, 0.25])
    assert np.allclose(layout(g, "lxmert4"), g[:, :4])
    features = np.ones((2, 2048), np.float16)
    assert with_geometry(features, g).shape == (2, 2054)  # Oscar's input
    with pytest.raises(ValueError, match="unknown box layout"):
        layout(g, "vinvl9")
    with pytest.raises(ValueError, match="positive"):
        normalised7(boxes, 0, 100)


def test_vg_vocabularies_and_index_conventions():
    objects, attributes = vg_vocabulary("objects"), vg_vocabulary("attributes")
    assert len(objects) == 1601 and len(attributes) == 401
    assert objects.name(0) == BACKGROUND
    assert objects.name(1) == "yolk" and objects.name(73) == "sky"
    assert attributes.name(7) == "blue"
    assert ("stop sign", "stopsign") in objects.synonyms
    assert detectron2_to_caffe(1600, 1600) == 0 and detectron2_to_caffe(72, 1600) == 73
    assert caffe_to_lxmert(73) == 72
    with pytest.raises(ValueError, match="background"):
        caffe_to_lxmert(0)


def test_vocabulary_lines_with_crlf_and_blank_end():
    vocab = parse_vocabulary("dog\r\ncat,kitty\r\n", "__background__", "v.txt")
    assert vocab.names == ("__background__", "dog", "cat")
    assert vocab.synonyms[2] == ("cat", "kitty")

import pickle
import re

import pyarrow as pa
import pytest

from mmdata.core.args import check_args
from mmdata.stages.caption_filter import CaptionFilter
from mmdata.stages.language_filter import LanguageFilter
from tests.stages.helpers import caption, work_batch

FOUR = ["en", "de", "fr", "es"]
EN = [
    "actor attends the premiere of the film",
    "a very typical bus station",  # CC3M train/validation rows
    "young confused girl standing in front of a wardrobe",
    "interior design of modern living room with fireplace in a new house",
]
DE = ["ein Hund läuft über die Wiese im Park", "Schauspieler bei der Premiere des Films"]
FR = ["un chat dort sur le canapé près de la fenêtre", "l'actrice arrive à la cérémonie"]
ES = ["una mujer camina por la playa al atardecer", "el actor llega a la ceremonia de premios"]
DETAIL = re.compile(r"detected (de|fr|es) \(0\.\d\d\); keep en >= 0\.3 \(en 0\.\d\d\)")


@pytest.fixture(scope="module")
def english() -> LanguageFilter:
    """Four candidate languages load in well under a second; models are shared by every
    detector of the process, so the other filters built below cost nothing more."""
    stage = LanguageFilter(languages=["en"], candidates=FOUR, min_confidence=0.3)
    stage.setup()
    return stage


def kept_ids(table: pa.Table) -> list[list[str]]:
    return [[c["caption_id"] for c in row] for row in table.column("captions").to_pylist()]


def rejects(table: pa.Table) -> list[list[tuple]]:
    return [
        [(r["kind"], r["item_id"], r["reason"]) for r in row or []]
        for row in table.column("_item_rejects").to_pylist()
    ]


def test_keeps_english_drops_german_french_spanish(english: LanguageFilter):
    rows = [[caption(f"en{i}", text)] for i, text in enumerate(EN)]
    rows += [[caption(f"x{i}", text)] for i, text in enumerate(DE + FR + ES)]
    out = english.process(work_batch(captions=rows))
    assert out.column("status").to_pylist() == ["ok"] * 4 + ["rejected"] * 6
    assert out.column("reason").to_pylist() == [None] * 4 + ["language"] * 6
    assert kept_ids(out)[:4] == [["en0"], ["en1"], ["en2"], ["en3"]]
    details = out.column("_detail").to_pylist()[4:]
    assert all(DETAIL.fullmatch(d) for d in details), details
    assert details[0].startswith("detected de (0.9")
    item = out.column("_item_rejects")[4].as_py()[0]
    assert item == {**item, "kind": "caption", "item_id": "x0", "text": DE[0], "status": "rejected"}
    assert item["reason"] == "language" and item["detail"] == details[0]


def test_multi_caption_row_loses_one_caption_and_stays(english: LanguageFilter):
    row = [caption("1", EN[0]), caption("2", DE[0]), caption("3", EN[2])]
    out = english.process(work_batch(captions=[row]))
    assert out.column("status").to_pylist() == ["ok"]
    assert kept_ids(out) == [["1", "3"]]
    assert rejects(out) == [[("caption", "2", "language")]]
    assert DETAIL.fullmatch(out.column("_item_rejects")[0][0]["detail"].as_py())


def test_row_rejected_when_every_caption_goes(english: LanguageFilter):
    row = [caption("1", FR[0]), caption("2", ES[0]), caption("3", "   ")]
    out = english.process(work_batch(captions=[row]))
    assert out.column("status").to_pylist() == ["rejected"]
    assert out.column("reason").to_pylist() == ["language"]
    assert kept_ids(out) == [[]]
    assert rejects(out) == [[("caption", i, "language") for i in "123"]]
    detail = out.column("_detail")[0].as_py()
    assert detail.startswith("all 3 captions dropped; first: detected fr (0.9")
    assert out.column("_item_rejects")[0][2]["detail"].as_py() == "empty caption"


def test_empty_and_undetectable_captions(english: LanguageFilter):
    batch = work_batch(
        captions=[
            [caption("1", "")],
            [caption("2", None), caption("3", EN[1])],
            [caption("4", "123 456 !!!")],
        ]
    )
    out = english.process(batch)
    assert out.column("status").to_pylist() == ["rejected", "ok", "rejected"]
    assert out.column("_detail").to_pylist() == [
        "empty caption",
        None,
        "no language detected; keep en >= 0.3",
    ]
    assert rejects(out)[1] == [("caption", "2", "language")]


def test_rows_without_captions_are_left_alone(english: LanguageFilter):
    out = english.process(work_batch(captions=[None, [], [caption("1", EN[0])]]))
    assert out.column("status").to_pylist() == ["ok"] * 3
    assert rejects(out) == [[], [], []]


def test_earlier_item_rejects_are_kept():
    batch = work_batch(captions=[[caption("1", "  "), caption("2", DE[1]), caption("3", EN[3])]])
    out = LanguageFilter(candidates=FOUR).process(CaptionFilter().process(batch))
    assert rejects(out) == [[("caption", "1", "empty_caption"), ("caption", "2", "language")]]
    assert kept_ids(out) == [["3"]]


def test_keeps_several_languages():
    stage = LanguageFilter(languages=["DE", "fr"], candidates=FOUR, min_confidence=0.5)
    rows = [[caption("en", EN[2])], [caption("de", DE[0])], [caption("fr", FR[1])]]
    out = stage.process(work_batch(captions=rows))
    assert out.column("status").to_pylist() == ["rejected", "ok", "ok"]
    assert out.column("_detail")[0].as_py().startswith("detected en (0.9")
    assert out.column("_detail")[0].as_py().endswith("; keep de/fr >= 0.5 (de 0.02)")


def test_defaults_keep_short_english_captions():
    """All 75 languages, high accuracy: confidences are low even for clean English
    captions (0.17 for EN[0]), which is why min_confidence defaults to 0.1."""
    batch = work_batch(captions=[[caption(str(i), t)] for i, t in enumerate(EN + DE)])
    out = LanguageFilter().process(batch)
    assert out.column("status").to_pylist() == ["ok"] * 4 + ["rejected"] * 2
    strict = LanguageFilter(min_confidence=0.5).process(batch)
    assert strict.column("_detail")[0].as_py() == "detected en (0.17); keep en >= 0.5"


def test_detector_is_built_lazily_and_never_pickled():
    stage = LanguageFilter(candidates=FOUR, low_accuracy=True)
    assert stage._detector is None  # recipes are validated without loading models
    stage.setup()
    assert stage._detector is not None
    clone = pickle.loads(pickle.dumps(stage))
    assert clone._detector is None
    out = clone.process(work_batch(captions=[[caption("1", EN[2])]]))
    assert out.column("status").to_pylist() == ["ok"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"languages": ["en", "xx"]}, r"languages: unknown ISO 639-1 code\(s\) \['xx'\]; valid"),
        ({"languages": []}, "languages must name at least one language"),
        ({"min_confidence": 1.5}, "min_confidence must be between 0 and 1, got 1.5"),
        ({"candidates": ["en", "qq"]}, r"candidates: unknown .*valid codes: af, ar, .* zh, zu"),
        ({"candidates": ["en"]}, "candidates must name at least two languages"),
        ({"candidates": ["de", "fr"]}, r"must include every kept language; missing \['en'\]"),
        ({"low_accuracy": "yes"}, "low_accuracy must be true or false"),
    ],
)
def test_bad_arguments(args: dict, message: str):
    with pytest.raises(ValueError, match=message):
        LanguageFilter(**args)


def test_recipe_argument_check():
    good = {
        "languages": ["en", "de"],
        "min_confidence": 1,
        "candidates": None,
        "low_accuracy": True,
    }
    checked = check_args(LanguageFilter, good, None)
    assert checked == {**good, "min_confidence": 1.0}
    LanguageFilter(**checked)
    bad = {"languages": "en", "min_confidence": "high", "detector": "fasttext"}
    with pytest.raises(ValueError) as info:
        check_args(LanguageFilter, bad, None)
    message = str(info.value)
    assert "argument 'languages' must be a list" in message
    assert "argument 'min_confidence' must be a number" in message
    assert "unknown argument 'detector'" in message
    assert "languages: list[str] = ['en']" in message

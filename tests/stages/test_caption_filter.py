from mmdata.stages.caption_filter import CaptionFilter, normalise
from tests.stages.helpers import caption, work_batch


def test_normalise_collapses_every_kind_of_space():
    assert normalise("  a\tred \n circle\u00a0 ") == "a red circle"
    assert normalise(None) == ""


def test_drops_captions_not_rows_and_keeps_the_dropped_ones():
    batch = work_batch(
        captions=[
            [caption("1", " a  red   circle "), caption("2", "ok"), caption("3", "  ")],
            [caption("4", "no"), caption("5", "")],
            [caption("6", "word " * 50)],
        ]
    )
    out = CaptionFilter(min_words=2, max_words=20).process(batch)
    assert out.column("status").to_pylist() == ["ok", "rejected", "rejected"]
    assert out.column("reason").to_pylist() == [None, "no_caption_left", "no_caption_left"]
    kept = out.column("captions")[0].as_py()
    assert [c["text"] for c in kept] == ["a red circle"]
    dropped = out.column("_item_rejects").to_pylist()
    assert [(d["kind"], d["item_id"], d["reason"]) for d in dropped[0]] == [
        ("caption", "2", "caption_too_short"),
        ("caption", "3", "empty_caption"),
    ]
    assert [d["reason"] for d in dropped[2]] == ["caption_too_long"]
    assert dropped[2][0]["detail"] == "50 words > max_words 20"


def test_char_limits():
    batch = work_batch(captions=[[caption("1", "a b"), caption("2", "x" * 30)]])
    out = CaptionFilter(min_chars=4, max_chars=20).process(batch)
    reasons = [d["reason"] for d in out.column("_item_rejects")[0].as_py()]
    assert reasons == ["caption_too_short", "caption_too_long"]

import pyarrow as pa
import pytest

from mmdata.core.args import check_args
from mmdata.stages.text_fix import TextFix, ftfy_can_change
from tests.stages.helpers import caption, work_batch

SCENE_GRAPH = {
    "objects": [
        {"head": "cafe", "text": "café", "span": {"start": 0, "end": 4}, "count": None,
         "attributes": []}
    ],
    "relations": [],
}  # fmt: skip


def texts(table: pa.Table) -> list[list[str | None] | None]:
    return [
        None if row is None else [c["text"] for c in row]
        for row in table.column("captions").to_pylist()
    ]


@pytest.mark.parametrize(
    ("broken", "fixed"),
    [
        ("cafÃ© au lait", "café au lait"),  # UTF-8 read as Windows-1252
        ("Ã¼ber die BrÃ¼cke im Park", "über die Brücke im Park"),
        ("Donâ€™t stop believing", "Don't stop believing"),  # curly-quote mojibake
        ("â€œkeep calmâ€\x9d poster", '"keep calm" poster'),
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&quot;Keep Calm&quot; - Blue Canvas", '"Keep Calm" - Blue Canvas'),  # LAION row
        ("traditional &#34;caldosa,&#34; a pot", 'traditional "caldosa," a pot'),
        ("<b>Game 20</b> &amp; more", "<b>Game 20</b> & more"),  # ftfy's "auto" keeps &amp;
        ("ﬁsh and chips", "fish and chips"),
        ("ＬＯＵＤ ＮＯＩＳＥＳ", "LOUD NOISES"),
        ("the cafe\u0301 at night", "the caf\u00e9 at night"),  # NFC
        ("a dog\r\nrunning", "a dog\nrunning"),
    ],
)
def test_repairs_broken_text(broken: str, fixed: str):
    out = TextFix().process(work_batch(captions=[[caption("1", broken)]]))
    assert texts(out) == [[fixed]]


def test_leaves_clean_text_ids_scene_graphs_and_rows_alone():
    clean = [
        caption("1", "actor attends the premiere of the film"),
        caption("2", "AT&T store on 5th avenue"),
        caption("3", "naïve résumé in l'été à Paris"),
        {"caption_id": "4", "text": "café", "scene_graph": SCENE_GRAPH},
    ]
    batch = work_batch(captions=[clean, None, [], [caption("5", None)]])
    out = TextFix().process(batch)
    assert out.schema == batch.schema
    assert out.column("captions").to_pylist() == batch.column("captions").to_pylist()
    assert out.column("status").to_pylist() == ["ok"] * 4


def test_works_on_sliced_and_chunked_batches():
    batch = work_batch(captions=[[caption("1", "cafÃ©")], [caption("2", "a &amp; b")]] * 2)
    chunked = pa.concat_tables([batch.slice(0, 1), batch.slice(1, 2)])
    assert texts(TextFix().process(chunked)) == [["café"], ["a & b"], ["café"]]
    assert texts(TextFix().process(batch.slice(3))) == [["a & b"]]


def test_options_turn_fixes_off():
    batch = work_batch(captions=[[caption("1", "“Tom &amp; Jerry” ﬁlm cafe\u0301")]])
    assert texts(TextFix().process(batch)) == [['"Tom & Jerry" film café']]
    off = TextFix(
        unescape_html=False, uncurl_quotes=False, fix_latin_ligatures=False, normalization=None
    )
    assert texts(off.process(batch)) == [["“Tom &amp; Jerry” ﬁlm cafe\u0301"]]
    assert TextFix(fix_encoding=False).fix("cafÃ©") == "cafÃ©"
    assert TextFix(normalization="NFKC").fix("x²") == "x2"


def test_fast_path_only_skips_text_ftfy_cannot_change():
    assert not ftfy_can_change("a red circle, 2 dogs (L69) - 100% cotton!")
    for text in ("Tom &amp; Jerry", "a\r\nb", "red \x1b[31mtext", "tab\there", "café"):
        assert ftfy_can_change(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"normalization": "nfc"}, "normalization must be one of NFC, NFKC, NFD, NFKD or None"),
        ({"unescape_html": "auto"}, "unescape_html must be true or false"),
    ],
)
def test_bad_arguments(args: dict, message: str):
    with pytest.raises(ValueError, match=message):
        TextFix(**args)


def test_recipe_argument_check():
    good = {"normalization": "NFKC", "uncurl_quotes": False, "unescape_html": True}
    assert check_args(TextFix, good, None) == good
    assert check_args(TextFix, {"normalization": None}, None) == {"normalization": None}
    with pytest.raises(ValueError) as info:
        check_args(TextFix, {"normalization": "XYZ", "fix_mojibake": True}, None)
    assert "'NFC', 'NFKC', 'NFD', 'NFKD'" in str(info.value)
    assert "unknown argument 'fix_mojibake'" in str(info.value)

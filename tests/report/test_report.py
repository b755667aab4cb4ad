"""`mmdata report` and `mmdata inspect` on the demo's corpora: every section there, with
the numbers the catalog holds; the HTML self-contained and rendered by headless Chromium."""

from __future__ import annotations

import re
import subprocess
from html import unescape
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from mmdata.catalog.store import Catalog
from mmdata.commands.cli import main
from tests.conftest import DATA, import_only

pytestmark = pytest.mark.ray  # the demo corpora come from `mmdata demo` on Ray


class _Elements(HTMLParser):
    """Tags with their attributes, and the visible text, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Elements:
    parsed = _Elements()
    parsed.feed(html)
    return parsed


@pytest.fixture(scope="module")
def demo_report(demo_out, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "demo.html"
    catalog = str(demo_out / "catalog.duckdb")
    assert main(["report", "demo", "-o", str(out), "--catalog", catalog, "--samples", "12"]) == 0
    return out


def test_the_report_has_every_section_with_the_catalogs_numbers(demo_report, demo_out):
    html = demo_report.read_text()
    page = _parse(html)
    headings = [t for t in page.text if t.strip()]
    for section in (
        "Filter funnel",
        "Distributions",
        "Dedup clusters",
        "Random samples (12)",
        "Recipe",
        "Run history",
    ):
        assert section in headings, section
    catalog = Catalog(demo_out / "catalog.duckdb")
    steps = catalog.query(
        "SELECT stage, rows_in, rows_out FROM stage_summary WHERE corpus = 'demo' "
        "ORDER BY step_index"
    )[1]
    funnel = html.split("<h2>Filter funnel</h2>")[1].split("<h2>")[0]
    rows = re.findall(r"<tr><td>(-?\d+)</td><td>(\w+)</td><td>(\d+)</td><td>(\d+)</td>", funnel)
    assert [(stage, int(i), int(o)) for _, stage, i, o in rows] == steps  # the funnel table
    images = [a for tag, a in page.tags if tag == "img"]
    assert all(a["src"].startswith("data:image/") for a in images)  # self-contained
    assert not re.search(r'(src|href)="(https?:)?//', html)
    alts = {a["alt"] for a in images}
    for chart in (
        "funnel",
        "caption words",
        "regions per image",
        "detector classes",
        "scene-graph objects",
        "scene-graph predicates",
        "gold object names",
        "languages",
    ):
        assert chart in alts, chart
    cards = [a for tag, a in page.tags if tag == "div" and a.get("class") == "card"]
    assert len(cards) == 12
    pictures = [a for a in images if a.get("class") == "pic"]
    assert len(pictures) == 12  # the demo keeps image bytes: every sample drawn
    assert len([a for tag, a in page.tags if tag == "svg"]) >= 6  # scene graphs drawn
    assert len(re.findall(r'<mark class="obj">', html)) >= 12
    assert len(re.findall(r'<mark class="rel">', html)) >= 1
    assert "butd-r101-c4-vg" in html  # the boxes' extractor is named
    assert "read_images: {keep_bytes: true}" in html  # the recipe text
    assert html.count("<td>finished</td>") >= 1  # the run history


def test_a_sample_card_marks_the_scene_graph_spans_of_its_caption(demo_report, demo_out):
    """Each mark's text is exactly the caption's text at the span the catalog stores."""
    catalog = Catalog(demo_out / "catalog.duckdb")
    objects = catalog.query(
        "SELECT c.text, o.span_start, o.span_end FROM scene_graph_objects o "
        "JOIN captions c USING (corpus, caption_id) WHERE corpus = 'demo'"
    )[1]
    want = {text[a:b] for text, a, b in objects}
    marked = _mark_texts(demo_report.read_text(), "obj")
    assert len(marked) >= 10 and marked <= want


def _mark_texts(html: str, kind: str) -> set[str]:
    """The text inside each ``<mark class=kind>``, with any marks nested in it."""
    found = set()
    for start in [m.end() for m in re.finditer(f'<mark class="{kind}">', html)]:
        depth, position = 1, start
        for tag in re.finditer(r"<(/?)mark\b[^>]*>", html[start:]):
            depth += -1 if tag.group(1) else 1
            if depth == 0:
                position = start + tag.start()
                break
        found.add(unescape(re.sub(r"<[^>]+>", "", html[start:position])))
    return found


def test_the_web_report_shows_the_duplicates_next_to_what_they_copy(demo_out, tmp_path):
    out = tmp_path / "web.html"
    catalog = str(demo_out / "catalog.duckdb")
    assert main(["report", "demo_web", "-o", str(out), "--catalog", catalog]) == 0
    html = out.read_text()
    for reason in ("duplicate_image", "near_duplicate", "duplicate_url"):
        assert f"<h3>{reason}: 1 dropped as copies of" in html, reason
    near = html.split("<h3>near_duplicate")[1].split("<h3>")[0]
    assert 'class="pic"' in near  # the kept image is drawn beside what was dropped
    assert re.search(r"<td>[1-4]</td>", near)  # the bits apart (max_distance 4)
    assert "http_404: 1" in html and "robots_disallow: 1" in html  # the funnel's reasons


def test_a_corpus_without_pictures_regions_or_graphs_still_reports_why(tmp_path):
    data = DATA / "cc3m" / "cc3m_train_GCC-training_first5.tsv"
    catalog = import_only(tmp_path, "cc", {"cc3m": {"tsv": str(data)}}, shard_rows=50)
    out = tmp_path / "cc.html"
    assert main(["report", "cc", "-o", str(out), "--catalog", catalog.path]) == 0
    html = out.read_text()
    assert "no regions: the recipe has no regions stage" in html
    assert "no scene graphs: the recipe has no scene_graph stage" in html
    assert "no rows were dropped as duplicates" in html
    assert 'class="nopic"' in html and "image not stored" in html


def test_an_unknown_corpus_is_one_line_naming_those_there_are(demo_out, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    assert main(["report", "nope", "--catalog", catalog]) != 0
    err = capsys.readouterr().err
    assert "no corpus 'nope'" in err and "'demo'" in err and len(err.strip().splitlines()) == 1


def test_the_report_renders_in_headless_chromium(demo_report, chromium, tmp_path):
    shot = tmp_path / "report.png"
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=10000"]  # fmt: skip
    url = demo_report.resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-broken-images="0"' in dom.stdout  # every inline picture decoded
    done = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1280,4000", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (4000, 1280)
    not_white = (pixels < 240).any(axis=2).mean()
    chart_blue = (np.abs(pixels - [0x43, 0x63, 0xD8]).sum(axis=2) < 40).sum()
    assert not_white > 0.05 and chart_blue > 500, (not_white, chart_blue)


def test_inspect_prints_one_sample_and_writes_its_page(demo_out, tmp_path, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    image_id, caption = Catalog(catalog).query(
        "SELECT image_id, text FROM captions WHERE corpus = 'demo' ORDER BY caption_id LIMIT 1"
    )[1][0]
    page = tmp_path / "one.html"
    assert main(["inspect", image_id, "--catalog", catalog, "--open", str(page)]) == 0
    out = capsys.readouterr().out
    assert image_id in out and caption in out
    assert "regions: butd-r101-c4-vg" in out and "-->" in out  # boxes table, relations
    html = page.read_text()
    assert f'<div class="card" id="{image_id}">' in html and 'class="pic"' in html


def test_inspect_says_why_an_id_is_not_there(demo_out, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    rejected = Catalog(catalog).query(
        "SELECT image_id, reason FROM rejects WHERE corpus = 'demo' AND item_kind IS NULL "
        "ORDER BY image_id LIMIT 1"
    )[1][0]
    assert main(["inspect", rejected[0], "--catalog", catalog]) != 0
    assert "was rejected from corpus 'demo'" in capsys.readouterr().err
    assert main(["inspect", "coco:999999", "--catalog", catalog]) != 0
    assert "no image 'coco:999999'" in capsys.readouterr().err

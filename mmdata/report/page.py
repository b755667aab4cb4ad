"""HTML of a corpus report and of one sample's page: one self-contained file each (styles,
charts and pictures inline), readable offline and safe to mail around."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from mmdata.report import plots
from mmdata.report.draw import boxed_jpeg, caption_html, data_uri, scene_graph_svg
from mmdata.report.gather import Cluster, CorpusFacts, Sample

NUMERIC = {
    "caption words",
    "captions per image",
    "image width (px, bins of 32)",
    "image height (px, bins of 32)",
    "aspect ratio (width / height)",
    "regions per image",
}
# what an empty chart means, so a reader knows which stage would fill it
EMPTY_BECAUSE = {
    "regions per image": "no regions: the recipe has no regions stage",
    "detector classes": "no regions: the recipe has no regions stage",
    "detector attributes": "no detector attributes",
    "scene-graph objects": "no scene graphs: the recipe has no scene_graph stage",
    "scene-graph attributes": "no attributes in the parsed scene graphs",
    "scene-graph predicates": "no relations in the parsed scene graphs",
    "gold object names": "no gold annotations in this source",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1280px;padding:0 18px;color:#222}
h1{margin-bottom:0}h2{border-bottom:2px solid #4363d8;padding-bottom:3px;margin-top:34px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#eef2fb}.muted{color:#777}
.grid{display:flex;flex-wrap:wrap;gap:14px}.chart img{max-width:100%}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;width:380px;background:#fafafa}
.card img.pic{display:block;max-width:360px;margin-bottom:6px}.cap{margin:6px 0 2px}
.nopic{width:360px;height:120px;background:#eee;color:#777;display:flex;align-items:center;
justify-content:center;text-align:center;font-size:12px}
mark.obj{background:#dbe9ff}mark.attr{background:#fff3c4}mark.rel{background:#ffd6e0}
svg.sg{display:block;max-width:100%;overflow:visible}pre{background:#f4f4f4;padding:10px;
overflow-x:auto;font-size:12px}.legend mark{padding:0 4px}
"""

# A reader (and the rendering test) can see whether any inline picture failed to decode.
CHECK_IMAGES = """<script>
window.addEventListener("load", function () {
  var bad = Array.prototype.filter.call(document.images, function (i) {
    return !i.complete || i.naturalWidth === 0; }).length;
  document.body.setAttribute("data-broken-images", String(bad));
});
</script>"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}{CHECK_IMAGES}</body></html>"
    )


def sample_card(sample: Sample, max_captions: int = 5) -> str:
    """One sample: the picture with boxes, ids, and each caption with its scene graph."""
    jpeg, why = boxed_jpeg(sample)
    picture = (
        f'<img class="pic" alt="{_e(sample.image_id)}" src="{data_uri(jpeg, "image/jpeg")}">'
        if jpeg
        else f'<div class="nopic">{_e(why)}</div>'
    )
    size = f"{sample.width}x{sample.height}" if sample.width else "size unknown"
    extractor = (sample.regions or {}).get("extractor")
    lines = [
        picture,
        f"<b>{_e(sample.image_id)}</b> <span class='muted'>"
        f"{_e(' / '.join(x for x in (sample.source, sample.split, size) if x))}</span>",
    ]
    if extractor:
        lines.append(f"<div class='muted'>boxes: {_e(extractor)}</div>")
    elif (sample.gold or {}).get("objects"):
        lines.append("<div class='muted'>boxes: gold annotations</div>")
    for caption in sample.captions[:max_captions]:
        graph = caption.get("scene_graph")
        lines.append(f"<div class='cap'>{caption_html(caption.get('text') or '', graph)}</div>")
        lines.append(scene_graph_svg(graph))
    if len(sample.captions) > max_captions:
        lines.append(f"<div class='muted'>+{len(sample.captions) - max_captions} captions</div>")
    return f'<div class="card" id="{_e(sample.image_id)}">{"".join(lines)}</div>'


LEGEND = (
    "<p class='legend'>Caption marks come from the scene-graph spans: "
    "<mark class='obj'>object</mark> <mark class='attr'>attribute</mark> "
    "<mark class='rel'>relation</mark>. Boxes: the detector's most confident, labelled "
    "attribute, class and confidence (gold boxes where there are no detector regions).</p>"
)


def sample_page(sample: Sample, corpus: str) -> str:
    """A page for one sample (`mmdata inspect --open`)."""
    body = f"<h1>{_e(sample.image_id)}</h1><p class='muted'>corpus {_e(corpus)}</p>"
    return _page(sample.image_id, body + LEGEND + sample_card(sample, max_captions=50))


def _funnel(facts: CorpusFacts) -> str:
    if not facts.funnel:
        return "<p class='muted'>no shard finished yet</p>"
    rows = [
        [
            s["step_index"],
            s["stage"],
            s["rows_in"],
            s["rows_out"],
            s["rows_in"] - s["rows_out"],
            ", ".join(f"{reason}: {n}" for reason, n in s["drops"].items()) or "-",
            f"{s['seconds']:.1f}",
        ]
        for s in facts.funnel
    ]
    table = _table(["step", "stage", "in", "out", "dropped", "drops by reason", "s"], rows)
    return f'<div class="chart"><img alt="funnel" src="{plots.funnel(facts.funnel)}"></div>{table}'


def _distributions(facts: CorpusFacts) -> str:
    charts, empty = [], []
    for title, pairs in facts.counts.items():
        if not pairs:
            empty.append(f"{title}: {EMPTY_BECAUSE.get(title, 'no data')}")
            continue
        uri = plots.distribution(title, pairs, categorical=title not in NUMERIC)
        charts.append(f'<div class="chart"><img alt="{_e(title)}" src="{uri}"></div>')
    if facts.languages:
        title = f"languages (lingua, {facts.languages_sampled} sampled captions)"
        uri = plots.distribution(title, facts.languages[:15], categorical=True)
        charts.append(f'<div class="chart"><img alt="languages" src="{uri}"></div>')
    notes = "".join(f"<li>{_e(line)}</li>" for line in empty)
    return f'<div class="grid">{"".join(charts)}</div>' + (
        f"<ul class='muted'>{notes}</ul>" if notes else ""
    )


def _cluster(cluster: Cluster) -> str:
    kept = (
        sample_card(cluster.kept, max_captions=1)
        if cluster.kept
        else ("<div class='nopic'>the kept copy is not in the corpus (rejected later)</div>")
    )
    rows = [
        [d["image_id"], d.get("url") or "", d.get("distance", ""), d["detail"]]
        for d in cluster.dropped
    ]
    return (
        f"<h3>{_e(cluster.reason)}: {len(cluster.dropped)} dropped as copies of "
        f"<code>{_e(cluster.key)}</code></h3><div class='grid'>{kept}"
        f"{_table(['dropped', 'url', 'bits apart', 'detail'], rows)}</div>"
    )


def report_page(facts: CorpusFacts, catalog: str) -> str:
    """The whole report of one corpus."""
    made = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    totals = _table(list(facts.totals), [list(facts.totals.values())])
    clusters = "".join(_cluster(c) for c in facts.clusters) or (
        "<p class='muted'>no rows were dropped as duplicates</p>"
    )
    samples = "".join(sample_card(s) for s in facts.samples) or "<p class='muted'>no rows</p>"
    runs = _table(
        ["run", "executor", "status", "started", "finished", "shards written", "error"],
        [list(r.values()) for r in facts.runs],
    )
    body = f"""
<h1>Corpus {_e(facts.corpus)}</h1>
<p class="muted">catalog {_e(catalog)} &middot; output {_e(facts.output)} &middot;
report made {made}</p>{totals}
<h2>Filter funnel</h2>{_funnel(facts)}
<h2>Distributions</h2>{_distributions(facts)}
<h2>Dedup clusters</h2>{clusters}
<h2>Random samples ({len(facts.samples)})</h2>{LEGEND}<div class="grid">{samples}</div>
<h2>Recipe</h2><pre>{_e(facts.recipe_text)}</pre>
<h2>Run history</h2>{runs}
"""
    return _page(f"mmdata report: {facts.corpus}", body)

"""`mmdata inspect IMAGE_ID`: one sample in the terminal (rich), with `--open` its page."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mmdata.catalog.store import Catalog, CatalogError
from mmdata.report.draw import span_marks
from mmdata.report.gather import Sample, samples

STYLES = {"obj": "bold blue", "attr": "bold yellow", "rel": "bold magenta"}


def find_sample(catalog: Catalog, image_id: str, corpus: str | None) -> tuple[str, Sample]:
    """The row ``image_id`` (in ``corpus``, or the only corpus that has it).

    Raises:
        CatalogError: no such row, or several corpora have it and none was named.
    """
    params: list = [image_id] + ([corpus] if corpus else [])
    where = "image_id = ?" + (" AND corpus = ?" if corpus else "")
    holding = catalog.images_holding([image_id], corpus)  # only shards whose id range fits
    corpora = [
        r[0] for r in catalog.query(f"SELECT corpus FROM {holding} WHERE {where}", params)[1]
    ]
    if not corpora:
        rejected = catalog.query(
            "SELECT corpus, stage, reason, detail FROM rejects WHERE image_id = ? "
            "AND item_kind IS NULL",
            [image_id],
        )[1]
        if rejected:
            c, stage, reason, detail = rejected[0]
            raise CatalogError(
                f"{image_id} was rejected from corpus {c!r} by {stage}: {reason} ({detail})"
            )
        raise CatalogError(
            f"{catalog.path}: no image {image_id!r}" + (f" in corpus {corpus!r}" if corpus else "")
        )
    if len(set(corpora)) > 1:
        raise CatalogError(
            f"{image_id} is in corpora {sorted(set(corpora))}: pick one with --corpus"
        )
    return corpora[0], samples(catalog, corpora[0], "image_id = ?", [image_id], holding)[0]


def _marked(text: str, graph: dict | None) -> Text:
    """The caption with scene-graph spans styled (relations over objects over attributes
    where they overlap: the narrower, later style wins in rich)."""
    out = Text(text)
    for start, end, kind in span_marks(graph):
        out.stylize(STYLES[kind], start, end)
    return out


def _graph_lines(graph: dict | None) -> list[str]:
    objects = (graph or {}).get("objects") or []
    lines = []
    for i, obj in enumerate(objects):
        attributes = ", ".join(a.get("text") or "" for a in obj.get("attributes") or [])
        count = f" x{obj['count']}" if obj.get("count") and obj["count"] > 1 else ""
        lines.append(
            f"  [{i}] {obj.get('head')}{count}" + (f"  ({attributes})" if attributes else "")
        )

    def name(k: object) -> str:
        ok = isinstance(k, int) and 0 <= k < len(objects)
        return str(objects[k].get("head")) if ok else "?"  # type: ignore[index]

    for relation in (graph or {}).get("relations") or []:
        s, o = relation.get("subject"), relation.get("object")
        lines.append(f"  {name(s)} --{relation.get('predicate')}--> {name(o)}")
    if graph and graph.get("note"):
        lines.append(f"  note: {graph['note']}")
    return lines


def render(sample: Sample, corpus: str, max_boxes: int = 20) -> Group:
    """The rich renderable of one sample."""
    facts = Table.grid(padding=(0, 2))
    for key, value in [
        ("corpus", corpus),
        ("source / split", f"{sample.source} / {sample.split}"),
        ("size", f"{sample.width}x{sample.height}" if sample.width else "unknown"),
        ("url", sample.url),
        ("path", sample.path),
        ("image bytes", f"{len(sample.image_bytes):,}" if sample.image_bytes else "not stored"),
    ]:
        if value:
            facts.add_row(Text(key, style="dim"), str(value))
    parts: list = [facts]
    for caption in sample.captions:
        graph = caption.get("scene_graph")
        body = [_marked(caption.get("text") or "", graph)]
        body += [Text(line, style="dim") for line in _graph_lines(graph)]
        parts.append(Panel(Group(*body), title=caption.get("caption_id"), title_align="left"))
    regions = sample.regions
    if regions and regions.get("boxes"):
        boxes = Table(title=f"regions: {regions.get('extractor')}", title_justify="left")
        for column in ("#", "class", "attribute", "conf", "x1", "y1", "x2", "y2"):
            boxes.add_column(
                column, justify="right" if column not in ("class", "attribute") else "left"
            )
        tags, attrs, conf = (
            regions.get("tags") or [],
            regions.get("attributes") or [],
            regions.get("conf") or [],
        )
        for i, box in enumerate(regions["boxes"][:max_boxes]):
            boxes.add_row(
                str(i),
                tags[i] if i < len(tags) else "",
                attrs[i] if i < len(attrs) else "",
                f"{conf[i]:.2f}" if i < len(conf) else "",
                *(f"{v:.0f}" for v in box),
            )
        if len(regions["boxes"]) > max_boxes:
            boxes.caption = f"{len(regions['boxes']) - max_boxes} more boxes"
        parts.append(boxes)
    gold = (sample.gold or {}).get("objects") or []
    if gold:
        names = ", ".join((o.get("names") or ["?"])[0] for o in gold[:30])
        parts.append(Text(f"gold objects ({len(gold)}): {names}", style="dim"))
    return Group(Text(sample.image_id, style="bold"), *parts)


def inspect(
    catalog: str,
    image_id: str,
    corpus: str | None = None,
    open_page: str | None = None,
    console: Console | None = None,
) -> Path | None:
    """Print ``image_id``; with ``open_page``, also write its HTML page there and return it."""
    from mmdata.report.page import sample_page

    found_in, sample = find_sample(Catalog(catalog), image_id, corpus)
    (console or Console()).print(render(sample, found_in))
    if open_page is None:
        return None
    page = Path(open_page)
    page.write_text(sample_page(sample, found_in), encoding="utf-8")
    return page

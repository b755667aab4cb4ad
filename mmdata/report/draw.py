"""Pictures of one sample: the image with its detector (or gold) boxes and labels, the
caption with its scene-graph spans marked, and the scene graph as an SVG diagram."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mmdata.core.imagefile import ImageError, decode_or_reject, to_rgb
from mmdata.report.gather import Sample

MAX_PIXELS = 100_000_000  # what a report will decode; past it the tile says why
PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#9a6324", "#469990", "#800000", "#808000", "#000075"]  # fmt: skip


def data_uri(data: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"


def picture(sample: Sample) -> tuple[Image.Image | None, str]:
    """The sample's image from its stored bytes or local path, or None and why not."""
    data = sample.image_bytes
    if data is None and sample.path and "://" not in sample.path and Path(sample.path).is_file():
        data = Path(sample.path).read_bytes()
    if data is None:
        return None, "image not stored (keep_bytes: false) and no local file"
    try:
        return to_rgb(decode_or_reject(data, MAX_PIXELS)), ""
    except ImageError as exc:
        return None, f"cannot decode: {exc}"


def labelled_boxes(sample: Sample, max_boxes: int) -> tuple[list[tuple], tuple[int, int] | None]:
    """``(box xyxy, label)`` to draw, and the image size the boxes refer to: the detector's
    most confident boxes, else the gold boxes."""
    regions = sample.regions
    if regions and regions.get("boxes"):
        tags = regions.get("tags") or []
        attributes = regions.get("attributes") or []
        conf = regions.get("conf") or []
        order = sorted(range(len(regions["boxes"])), key=lambda i: -(conf[i] if conf else 0))
        boxes = []
        for i in order[:max_boxes]:
            words = [attributes[i] if i < len(attributes) else "", tags[i] if i < len(tags) else ""]
            label = " ".join(w for w in words if w)
            if conf:
                label += f" {conf[i]:.2f}"
            boxes.append((tuple(regions["boxes"][i]), label.strip()))
        return boxes, (regions["width"], regions["height"])
    objects = (sample.gold or {}).get("objects") or []
    boxes = []
    for obj in objects[:max_boxes]:
        if obj.get("box_xywh_px"):
            x, y, w, h = obj["box_xywh_px"]
            names = obj.get("names") or [""]
            attributes = obj.get("attributes") or []
            boxes.append(((x, y, x + w, y + h), " ".join([*attributes[:1], names[0]]).strip()))
    size = (sample.width, sample.height) if sample.width and sample.height else None
    return boxes, size


def boxed_jpeg(
    sample: Sample, max_side: int = 360, max_boxes: int = 12
) -> tuple[bytes | None, str]:
    """The image scaled to ``max_side`` with its boxes drawn and labelled (JPEG), or None
    and why there is no picture."""
    image, why = picture(sample)
    if image is None:
        return None, why
    boxes, size = labelled_boxes(sample, max_boxes)
    source_w, source_h = size or image.size
    image.thumbnail((max_side, max_side))
    sx, sy = image.width / max(source_w, 1), image.height / max(source_h, 1)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for i, ((x1, y1, x2, y2), label) in enumerate(boxes):
        colour = PALETTE[i % len(PALETTE)]
        rect = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        draw.rectangle(rect, outline=colour, width=2)
        if label:
            left, top, right, bottom = draw.textbbox((rect[0] + 2, rect[1] + 1), label, font=font)
            draw.rectangle((left - 2, top - 1, right + 2, bottom + 1), fill=colour)
            draw.text((rect[0] + 2, rect[1] + 1), label, fill="white", font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue(), ""


def span_marks(graph: dict | None) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of each span a scene graph stores, kind ``obj``, ``attr`` or
    ``rel``: each object then its attributes, then the relations."""
    marks: list[tuple[int, int, str]] = []
    for obj in (graph or {}).get("objects") or []:
        if obj.get("span"):
            marks.append((obj["span"]["start"], obj["span"]["end"], "obj"))
        for attribute in obj.get("attributes") or []:
            if attribute.get("span"):
                marks.append((attribute["span"]["start"], attribute["span"]["end"], "attr"))
    for relation in (graph or {}).get("relations") or []:
        if relation.get("span"):
            marks.append((relation["span"]["start"], relation["span"]["end"], "rel"))
    return marks


def caption_html(text: str, graph: dict | None) -> str:
    """The caption with the words of each object, attribute and predicate marked, as the
    spans in its scene graph say (so a wrong span shows as a wrong mark)."""
    marks = span_marks(graph)
    # inner marks (an attribute inside its object's phrase) nest inside outer ones
    opens: dict[int, list[tuple[int, str]]] = {}
    closes: dict[int, int] = {}
    for start, end, kind in sorted(marks, key=lambda m: (m[0], -m[1])):
        if 0 <= start < end <= len(text):
            opens.setdefault(start, []).append((end, kind))
            closes[end] = closes.get(end, 0) + 1
    out, stack = [], []
    for position, char in enumerate([*text, ""]):
        for _ in range(closes.get(position, 0)):
            if stack:
                stack.pop()
                out.append("</mark>")
        for end, kind in opens.get(position, []):
            stack.append(end)
            out.append(f'<mark class="{kind}">')
        out.append(html.escape(char))
    out.extend("</mark>" for _ in stack)
    return "".join(out)


def scene_graph_svg(graph: dict | None) -> str:
    """Objects as boxes in a row with their attributes above, relations as labelled arcs
    below; an empty string when the graph has no objects."""
    objects = (graph or {}).get("objects") or []
    if not objects:
        return ""
    relations = (graph or {}).get("relations") or []
    step, box_w, box_h, top = 130, 116, 26, 14
    attribute_rows = max((len(o.get("attributes") or []) for o in objects), default=0)
    base = top + attribute_rows * 20 + 10
    arcs_h = 30 + 18 * len(relations)
    width, height = step * len(objects) + 10, base + box_h + arcs_h
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>'
        "</defs>",
    ]
    for i, obj in enumerate(objects):
        x = 5 + i * step
        name = obj.get("head") or obj.get("text") or "?"
        if obj.get("count") and obj["count"] > 1:
            name = f"{name} \u00d7{obj['count']}"
        for j, attribute in enumerate(obj.get("attributes") or []):
            y = base - 10 - (j + 1) * 20
            parts.append(
                f'<rect x="{x + 14}" y="{y}" width="{box_w - 28}" height="17" rx="8" '
                f'fill="#fff3c4" stroke="#c9a227"/><text x="{x + box_w / 2}" y="{y + 13}" '
                f'text-anchor="middle">{html.escape(attribute.get("text") or "")}</text>'
            )
        if obj.get("attributes"):
            parts.append(
                f'<line x1="{x + box_w / 2}" y1="{base - 13}" x2="{x + box_w / 2}" '
                f'y2="{base}" stroke="#c9a227"/>'
            )
        parts.append(
            f'<rect x="{x}" y="{base}" width="{box_w}" height="{box_h}" rx="4" '
            f'fill="#dbe9ff" stroke="#4363d8"/><text x="{x + box_w / 2}" y="{base + 17}" '
            f'text-anchor="middle" font-weight="bold">{html.escape(name)}</text>'
        )
    for k, relation in enumerate(relations):
        s, o = relation.get("subject"), relation.get("object")
        if not (isinstance(s, int) and isinstance(o, int) and 0 <= s < len(objects)):
            continue
        if not 0 <= o < len(objects):
            continue
        x1, x2 = 5 + s * step + box_w / 2, 5 + o * step + box_w / 2
        depth = base + box_h + 16 + 18 * k
        if s == o:
            x2 = x1 + 20
        parts.append(
            f'<path d="M{x1},{base + box_h} C{x1},{depth + 10} {x2},{depth + 10} '
            f'{x2},{base + box_h}" fill="none" stroke="#555" marker-end="url(#arrow)"/>'
            f'<text x="{(x1 + x2) / 2}" y="{depth + 14}" text-anchor="middle" fill="#b03060">'
            f"{html.escape(relation.get('predicate') or '')}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)

"""The demo corpus: generated scenes of coloured shapes, in real COCO format.

Each image holds one to three shapes; its captions say what they are and where they
stand ("a small red circle to the left of a large blue square"); the instances file
gives their boxes. A few rows are broken on purpose (a truncated JPEG, a missing file,
a tiny image, a banner, captions that fail the caption filter) so the demo shows the
rejects path end to end. Deterministic for a seed.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "yellow": (235, 205, 40),
    "purple": (140, 60, 180),
    "orange": (245, 140, 30),
}
SHAPES = {"circle": 1, "square": 2, "triangle": 3}
BACKGROUNDS = [(250, 250, 250), (225, 225, 225), (240, 232, 215)]


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str  # small | large
    cx: float
    cy: float
    r: float

    @property
    def phrase(self) -> str:
        return f"{self.size} {self.colour} {self.kind}"

    @property
    def box_xywh(self) -> list[float]:
        return [
            round(self.cx - self.r, 2),
            round(self.cy - self.r, 2),
            round(2 * self.r, 2),
            round(2 * self.r, 2),
        ]

    def polygon(self) -> list[float]:
        if self.kind == "square":
            x, y, w, h = self.box_xywh
            points = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
        elif self.kind == "triangle":
            points = [
                (self.cx, self.cy - self.r),
                (self.cx + self.r, self.cy + self.r),
                (self.cx - self.r, self.cy + self.r),
            ]
        else:
            points = [
                (
                    self.cx + self.r * math.cos(a / 16 * 2 * math.pi),
                    self.cy + self.r * math.sin(a / 16 * 2 * math.pi),
                )
                for a in range(16)
            ]
        return [round(v, 2) for p in points for v in p]


def relation(a: Shape, b: Shape) -> str:
    """Where ``a`` stands relative to ``b``, by the larger offset of their centres."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if dx > 0 else "to the right of"
    return "above" if dy > 0 else "below"


def _shapes(rng: random.Random, width: int, height: int) -> list[Shape]:
    shapes: list[Shape] = []
    for _ in range(rng.choice([1, 2, 2, 3])):
        for _attempt in range(50):
            size = rng.choice(["small", "large"])
            r = rng.uniform(14, 24) if size == "small" else rng.uniform(34, 52)
            r = min(r, min(width, height) / 2 - 3)  # tiny images: the shape must fit
            cx, cy = rng.uniform(r + 2, width - r - 2), rng.uniform(r + 2, height - r - 2)
            if all(math.hypot(cx - s.cx, cy - s.cy) > r + s.r + 6 for s in shapes):
                shapes.append(
                    Shape(rng.choice(list(SHAPES)), rng.choice(list(COLOURS)), size, cx, cy, r)
                )
                break
    return shapes


def _captions(rng: random.Random, shapes: list[Shape]) -> list[str]:
    if len(shapes) == 1:
        s = shapes[0]
        return [
            f"a {s.phrase} on a plain background",
            f"a single {s.colour} {s.kind}",
            f"one {s.size} {s.kind} that is {s.colour}",
        ]
    a, b = rng.sample(shapes, 2)
    captions = [
        f"a {a.phrase} {relation(a, b)} a {b.phrase}",
        f"a {b.phrase} {relation(b, a)} a {a.phrase}",
    ]
    listed = " and ".join(f"a {s.colour} {s.kind}" for s in shapes)
    captions.append(f"{len(shapes)} shapes: {listed}" if len(shapes) > 2 else f"there is {listed}")
    return captions


def _draw(shapes: list[Shape], width: int, height: int, background: tuple) -> Image.Image:
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for s in shapes:
        colour = COLOURS[s.colour]
        if s.kind == "circle":
            draw.ellipse([s.cx - s.r, s.cy - s.r, s.cx + s.r, s.cy + s.r], fill=colour)
        else:
            flat = s.polygon()
            draw.polygon(list(zip(flat[::2], flat[1::2])), fill=colour)
    return image


def generate(out_dir: str | Path, num_images: int = 64, seed: int = 0) -> dict[str, str]:
    """Write images/, captions_demo.json and instances_demo.json under ``out_dir``.

    Returns the paths written, by role (``captions``, ``instances``, ``images``).
    """
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, captions, objects = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = rng.choice([(320, 240), (288, 224), (256, 256), (320, 200)])
        broken = _broken_kind(image_id)
        if broken == "tiny":
            width, height = 48, 40
        elif broken == "banner":
            width, height = 640, 96
        shapes = _shapes(rng, width, height)
        file_name = f"{image_id:012d}.jpg"
        _draw(shapes, width, height, rng.choice(BACKGROUNDS)).save(
            out / "images" / file_name, quality=90
        )
        if broken == "truncated":
            data = (out / "images" / file_name).read_bytes()
            (out / "images" / file_name).write_bytes(data[: len(data) // 3])
        elif broken == "missing":
            (out / "images" / file_name).unlink()
        images.append(
            {
                "license": 4,
                "file_name": file_name,
                "height": height,
                "width": width,
                "date_captured": "2026-11-23 00:00:00",
                "id": image_id,
            }
        )
        texts = _captions(rng, shapes)
        if broken == "bad_captions":
            texts = ["ok", "   ", "shapes"]
        elif broken == "one_empty_caption":
            texts = texts[:2] + [" \t "]
        for text in texts:
            captions.append({"image_id": image_id, "id": len(captions) + 1, "caption": text})
        for s in shapes:
            x, y, w, h = s.box_xywh
            objects.append(
                {
                    "segmentation": [s.polygon()],
                    "area": round(w * h, 2),
                    "iscrowd": 0,
                    "image_id": image_id,
                    "bbox": s.box_xywh,
                    "category_id": SHAPES[s.kind],
                    "id": len(objects) + 1,
                }
            )
    return _write_json(out, images, captions, objects)


def _broken_kind(image_id: int) -> str | None:
    """The deliberately bad rows, spread over the shards."""
    return {
        7: "truncated",
        19: "missing",
        26: "tiny",
        38: "banner",
        45: "bad_captions",
        53: "one_empty_caption",
    }.get(image_id)


def _write_json(out: Path, images: list, captions: list, objects: list) -> dict[str, str]:
    info = {
        "description": "mmdata demo: coloured shapes",
        "version": "1.0",
        "year": 2026,
        "contributor": "mmdata",
        "date_created": "2026/11/23",
    }
    licenses = [
        {
            "url": "http://creativecommons.org/licenses/by/2.0/",
            "id": 4,
            "name": "Attribution License",
        }
    ]
    categories = [{"supercategory": "shape", "id": i, "name": n} for n, i in SHAPES.items()]
    paths = {"captions": out / "captions_demo.json", "instances": out / "instances_demo.json"}
    paths["captions"].write_text(
        json.dumps({"info": info, "licenses": licenses, "images": images, "annotations": captions})
    )
    paths["instances"].write_text(
        json.dumps(
            {
                "info": info,
                "licenses": licenses,
                "images": images,
                "annotations": objects,
                "categories": categories,
            }
        )
    )
    return {"images": str(out / "images"), **{k: str(v) for k, v in paths.items()}}


def random_butd_weights(path: str | Path, seed: int = 0) -> Path:
    """A randomly initialised butd-r101-c4-vg checkpoint (detectron2 .pkl) at ``path``.

    Kept if already there, so a re-run of the demo sees the same extractor id. The
    classifier's logits are scaled up so the boxes get decisive (if meaningless) classes.
    """
    path = Path(path)
    if path.is_file():
        return path
    import torch

    from mmdata.models.regions.butd import ButdDetector
    from mmdata.models.regions.checkpoint import as_detectron2_pkl

    torch.manual_seed(seed)
    model = ButdDetector()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(40.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    as_detectron2_pkl(model, path)
    return path

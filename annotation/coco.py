"""COCO captions (+ instances) JSON -> one row per image with its captions and boxes."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from typing import Any

import pyarrow as pa

from annotation.jsonfile import AnnotationError, load_json, require_keys
from mmdata.args import InputPath
from mmdata.io import join
from mmdata.registry import SOURCES
from mmdata.schema import IMAGE_SCHEMA, STATUS_ERROR
from mmdata.stage import Partition, Source


@SOURCES.register("coco")
class CocoSource(Source):
    """COCO captions JSON (+ optional instances JSON) -> image rows with captions and boxes.

    Rows follow the order of the captions file's ``images`` list, so partitions are
    stable across runs. Width and height come from the JSON; the file is read by a
    later stage (read_images).
    """

    writes = (
        "image_id",
        "source",
        "split",
        "url",
        "path",
        "width_px",
        "height_px",
        "captions",
        "gold",
    )

    def __init__(
        self,
        *,
        captions: InputPath,
        instances: InputPath | None = None,
        images: InputPath | None = None,
        split: str | None = None,
        keep_segmentation: bool = False,
    ) -> None:
        """Args:
        captions: path of a COCO captions JSON (images + annotations with 'caption').
        instances: optional path of the matching instances JSON (boxes, categories).
        images: folder or URL prefix that holds the images' file_name.
        split: split name stored on every row (e.g. val2017).
        keep_segmentation: keep polygons/RLE (as JSON text) on gold objects.
        """
        self.captions, self.instances, self.images = captions, instances, images
        self.split, self.keep_segmentation = split, keep_segmentation

    def partitions(self, rows_per_partition: int) -> list[Partition]:
        n = len(self._images())
        return [
            Partition(i, {"start": s, "end": min(s + rows_per_partition, n)})
            for i, s in enumerate(range(0, n, rows_per_partition))
        ]

    def read(self, partition: Partition) -> pa.Table:
        images = self._images()[partition.spec["start"] : partition.spec["end"]]
        captions = self._captions_by_image
        objects = self._objects_by_image
        seen: set[Any] = set()
        rows = [self._row(img, i, captions, objects, seen) for i, img in enumerate(images)]
        return pa.Table.from_pylist(rows, schema=_ROW_SCHEMA)

    def _row(self, image: Any, index: int, captions: dict, objects: dict, seen: set) -> dict:
        where = f"images[{index}]"
        if not isinstance(image, dict) or "id" not in image:
            return {
                "image_id": f"coco:?{where}",
                "source": "coco",
                "status": STATUS_ERROR,
                "reason": "missing_key",
                "_detail": f"{self.captions}: {where} has no 'id'",
            }
        image_id = image["id"]
        row: dict[str, Any] = {
            "image_id": f"coco:{image_id}",
            "source": "coco",
            "split": self.split,
            "url": image.get("coco_url"),
            "width_px": image.get("width"),
            "height_px": image.get("height"),
            "captions": captions.get(image_id, []),
            "gold": {"objects": objects.get(image_id, []), "relations": [], "regions": []},
        }
        file_name = image.get("file_name")
        if self.images and file_name:
            key = "url" if self.images.startswith(("http://", "https://")) else "path"
            row[key] = join(self.images, file_name)
        problem = self._problem(image, image_id, row, seen)
        if problem:
            row.update(
                status=STATUS_ERROR,
                reason=problem[0],
                _detail=f"{self.captions}: image id {image_id}: {problem[1]}",
            )
        seen.add(image_id)
        return row

    @staticmethod
    def _problem(image: dict, image_id: Any, row: dict, seen: set) -> tuple[str, str] | None:
        if image_id in seen:
            return "duplicate_id", "listed twice in images"
        missing = [k for k in ("file_name", "width", "height") if k not in image]
        if missing:
            return "missing_key", f"lacks {missing}"
        if not row["captions"]:
            return "no_captions", "no caption annotation refers to it"
        return None

    def _images(self) -> list:
        data = load_json(self.captions)
        require_keys(data, ("images", "annotations"), self.captions, "top level")
        if not isinstance(data["images"], list):
            raise AnnotationError(f"{self.captions}: 'images' is not a list")
        return data["images"]

    @functools.cached_property
    def _captions_by_image(self) -> dict[Any, list[dict]]:
        data = load_json(self.captions)
        known = {img.get("id") for img in self._images() if isinstance(img, dict)}
        by_image: dict[Any, list[dict]] = defaultdict(list)
        for i, ann in enumerate(data["annotations"]):
            require_keys(ann, ("id", "image_id", "caption"), self.captions, f"annotations[{i}]")
            if ann["image_id"] not in known:
                raise AnnotationError(
                    f"{self.captions}: annotation id {ann['id']} refers to "
                    f"image_id {ann['image_id']}, which is not in 'images'"
                )
            by_image[ann["image_id"]].append(
                {"caption_id": str(ann["id"]), "text": ann["caption"], "scene_graph": None}
            )
        return by_image

    @functools.cached_property
    def _objects_by_image(self) -> dict[Any, list[dict]]:
        if not self.instances:
            return {}
        data = load_json(self.instances)
        require_keys(data, ("annotations", "categories"), self.instances, "top level")
        names = {c["id"]: c["name"] for c in data["categories"]}
        by_image: dict[Any, list[dict]] = defaultdict(list)
        for i, ann in enumerate(data["annotations"]):
            require_keys(
                ann, ("id", "image_id", "bbox", "category_id"), self.instances, f"annotations[{i}]"
            )
            if ann["category_id"] not in names:
                raise AnnotationError(
                    f"{self.instances}: annotation id {ann['id']} has unknown "
                    f"category_id {ann['category_id']}"
                )
            by_image[ann["image_id"]].append(self._object(ann, names))
        return by_image

    def _object(self, ann: dict, names: dict) -> dict:
        segmentation = ann.get("segmentation") if self.keep_segmentation else None
        return {
            "object_id": str(ann["id"]),
            "category_id": ann["category_id"],
            "names": [names[ann["category_id"]]],
            "box_xywh_px": ann["bbox"],
            "area_px": ann.get("area"),
            "iscrowd": bool(ann.get("iscrowd", 0)),
            "attributes": [],
            "synsets": [],
            "segmentation": json.dumps(segmentation) if segmentation is not None else None,
        }


_ROW_SCHEMA = pa.schema(
    [IMAGE_SCHEMA.field(n) for n in (*CocoSource.writes, "status", "reason")]
    + [pa.field("_detail", pa.string())]
)

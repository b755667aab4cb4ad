"""COCO captions (+ instances) JSON -> one row per image with its captions and boxes."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from typing import Any

import pyarrow as pa

from annotation.jsonfile import AnnotationError, iter_array, load_json, require_keys
from annotation.records import box_problem, item_reject
from mmdata.args import InputPath
from mmdata.batch import ITEM_REJECT
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
        karpathy: InputPath | None = None,
        keep_segmentation: bool = False,
    ) -> None:
        """Args:
        captions: path of a COCO captions JSON (images + annotations with 'caption').
        instances: optional path of the matching instances JSON (boxes, categories).
        images: folder or URL prefix that holds the images' file_name.
        split: split name stored on every row (e.g. val2017).
        karpathy: optional Karpathy split file (dataset_coco.json); its split
            (train/restval/val/test) overrides ``split`` for the images it lists.
        keep_segmentation: keep polygons/RLE (as JSON text) on gold objects.
        """
        self.captions, self.instances, self.images = captions, instances, images
        self.split, self.karpathy, self.keep_segmentation = split, karpathy, keep_segmentation

    def partitions(self, rows_per_partition: int) -> list[Partition]:
        self._check_instances_match()
        n = len(self._images())
        return [
            Partition(i, {"start": s, "end": min(s + rows_per_partition, n)})
            for i, s in enumerate(range(0, n, rows_per_partition))
        ]

    def read(self, partition: Partition) -> pa.Table:
        start, end = partition.spec["start"], partition.spec["end"]
        rows = [self._row(image, start + i) for i, image in enumerate(self._images()[start:end])]
        return pa.Table.from_pylist(rows, schema=_ROW_SCHEMA)

    def _row(self, image: Any, index: int) -> dict:
        if not isinstance(image, dict) or "id" not in image:
            detail = f"{self.captions}: images[{index}] has no 'id'"
            return {
                "image_id": f"coco:?images[{index}]",
                "source": "coco",
                "status": STATUS_ERROR,
                "reason": "missing_key",
                "_detail": detail,
            }
        image_id = image["id"]
        captions, caption_rejects = self._captions_by_image.get(image_id, ([], []))
        objects, object_rejects = self._objects_by_image.get(image_id, ([], []))
        objects, box_rejects = self._checked_boxes(objects, image)
        row: dict[str, Any] = {
            "image_id": f"coco:{image_id}",
            "source": "coco",
            "split": self._karpathy_splits.get(image_id, self.split),
            "url": image.get("coco_url"),
            "width_px": image.get("width"),
            "height_px": image.get("height"),
            "captions": captions,
            "gold": {"objects": objects, "relations": [], "regions": []},
            "_item_rejects": caption_rejects + object_rejects + box_rejects or None,
        }
        file_name = image.get("file_name")
        if self.images and file_name:
            key = "url" if self.images.startswith(("http://", "https://")) else "path"
            row[key] = join(self.images, file_name)
        problem = self._problem(image, index, row)
        if problem:
            row.update(
                status=STATUS_ERROR,
                reason=problem[0],
                _detail=f"{self.captions}: image id {image_id}: {problem[1]}",
            )
        return row

    def _problem(self, image: dict, index: int, row: dict) -> tuple[str, str] | None:
        if self._first_index[image["id"]] != index:
            return (
                "duplicate_id",
                f"listed twice in images (first at images[{self._first_index[image['id']]}])",
            )
        missing = [k for k in ("file_name", "width", "height") if k not in image]
        if missing:
            return "missing_key", f"lacks {missing}"
        if not row["captions"]:
            return "no_captions", "no usable caption annotation refers to it"
        return None

    def _checked_boxes(self, objects: list[dict], image: dict) -> tuple[list[dict], list[dict]]:
        kept, rejects = [], []
        for obj in objects:
            problem = box_problem(obj["box_xywh_px"], image.get("width"), image.get("height"))
            if problem:
                rejects.append(
                    item_reject(
                        "object", obj["object_id"], problem[0], f"{self.instances}: {problem[1]}"
                    )
                )
            else:
                kept.append(obj)
        return kept, rejects

    def _images(self) -> list:
        data = load_json(self.captions)
        require_keys(data, ("images", "annotations"), self.captions, "top level")
        if not isinstance(data["images"], list):
            raise AnnotationError(f"{self.captions}: 'images' is not a list")
        return data["images"]

    @functools.cached_property
    def _first_index(self) -> dict[Any, int]:
        first: dict[Any, int] = {}
        for i, image in enumerate(self._images()):
            if isinstance(image, dict) and "id" in image:
                first.setdefault(image["id"], i)
        return first

    @functools.cached_property
    def _captions_by_image(self) -> dict[Any, tuple[list[dict], list[dict]]]:
        """image id -> (captions, rejected captions), in file order."""
        by_image: dict[Any, tuple[list, list]] = defaultdict(lambda: ([], []))
        seen: set[Any] = set()
        for i, ann in enumerate(load_json(self.captions)["annotations"]):
            require_keys(ann, ("id", "image_id", "caption"), self.captions, f"annotations[{i}]")
            if ann["image_id"] not in self._first_index:
                raise AnnotationError(
                    f"{self.captions}: annotation id {ann['id']} refers to "
                    f"image_id {ann['image_id']}, which is not in 'images'"
                )
            kept, rejected = by_image[ann["image_id"]]
            problem = _caption_problem(ann, seen)
            if problem:
                rejected.append(
                    item_reject(
                        "caption",
                        ann["id"],
                        problem[0],
                        f"{self.captions}: {problem[1]}",
                        str(ann["caption"]),
                    )
                )
            else:
                kept.append(
                    {"caption_id": str(ann["id"]), "text": ann["caption"], "scene_graph": None}
                )
            seen.add(ann["id"])
        return by_image

    @functools.cached_property
    def _objects_by_image(self) -> dict[Any, tuple[list[dict], list[dict]]]:
        """image id -> (gold objects, rejected objects) from the instances file."""
        if not self.instances:
            return {}
        data = load_json(self.instances)
        require_keys(data, ("annotations", "categories"), self.instances, "top level")
        names = {c["id"]: c["name"] for c in data["categories"]}
        by_image: dict[Any, tuple[list, list]] = defaultdict(lambda: ([], []))
        seen: set[Any] = set()
        for i, ann in enumerate(data["annotations"]):
            require_keys(
                ann, ("id", "image_id", "bbox", "category_id"), self.instances, f"annotations[{i}]"
            )
            kept, rejected = by_image[ann["image_id"]]
            if ann["id"] in seen:
                rejected.append(
                    item_reject(
                        "object",
                        ann["id"],
                        "duplicate_id",
                        f"{self.instances}: annotation id listed twice",
                    )
                )
            elif ann["category_id"] not in names:
                rejected.append(
                    item_reject(
                        "object",
                        ann["id"],
                        "unknown_category",
                        f"{self.instances}: category_id {ann['category_id']} "
                        "is not in 'categories'",
                    )
                )
            else:
                kept.append(self._object(ann, names))
            seen.add(ann["id"])
        return by_image

    @functools.cached_property
    def _karpathy_splits(self) -> dict[Any, str]:
        """COCO image id -> Karpathy split, streamed (the file holds every sentence too)."""
        if not self.karpathy:
            return {}
        splits = {}
        for i, record in enumerate(iter_array(self.karpathy, "images.item")):
            require_keys(record, ("cocoid", "split"), self.karpathy, f"images[{i}]")
            splits[record["cocoid"]] = record["split"]
        return splits

    def _check_instances_match(self) -> None:
        """Boxes of images the captions file lacks would have no row: refuse, don't drop."""
        stray = [i for i in self._objects_by_image if i not in self._first_index]
        if stray:
            raise AnnotationError(
                f"{self.instances}: has annotations for {len(stray)} image(s) not in "
                f"{self.captions} (e.g. image_id {stray[0]}); give the instances file of the "
                "same split"
            )

    def _object(self, ann: dict, names: dict) -> dict:
        segmentation = ann.get("segmentation") if self.keep_segmentation else None
        return {
            "object_id": str(ann["id"]),
            "category_id": ann["category_id"],
            "names": [names[ann["category_id"]]],
            "box_xywh_px": ann["bbox"],
            "score": None,
            "area_px": ann.get("area"),
            "iscrowd": bool(ann.get("iscrowd", 0)),
            "attributes": [],
            "synsets": [],
            "segmentation": json.dumps(segmentation) if segmentation is not None else None,
        }


def _caption_problem(ann: dict, seen: set) -> tuple[str, str] | None:
    if ann["id"] in seen:
        return "duplicate_id", f"caption annotation id {ann['id']} listed twice"
    if not isinstance(ann["caption"], str) or not ann["caption"].strip():
        return "empty_caption", f"caption annotation id {ann['id']} is empty"
    return None


_ROW_SCHEMA = pa.schema(
    [IMAGE_SCHEMA.field(n) for n in (*CocoSource.writes, "status", "reason")]
    + [pa.field("_detail", pa.string()), pa.field("_item_rejects", pa.list_(ITEM_REJECT))]
)

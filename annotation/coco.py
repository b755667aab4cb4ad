"""COCO captions (+ instances, + Karpathy splits) -> one row per image, streamed.

``partitions`` streams each file once (ijson) and spills every record into a JSON-lines
file of the partition that owns its image (annotation.spill); ``read`` opens only its
partition's files. Memory is bounded by one partition, not by instances_train2017.json's
450 MB, and Ray tasks read partitions in parallel.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import ijson
import pyarrow as pa

from annotation.gcpause import without_gc
from annotation.jsonfile import AnnotationError, iter_array, require_ids, require_keys
from annotation.records import (
    box_problem,
    is_id,
    number_or_none,
    pixels_or_none,
    size_problem,
    text_or_none,
)
from annotation.spill import Spill, SpilledSource, read_spill
from mmdata.core.args import InputPath
from mmdata.core.batch import ITEM_REJECT, item_reject
from mmdata.core.io import join
from mmdata.core.registry import SOURCES
from mmdata.core.schema import IMAGE_SCHEMA, STATUS_ERROR
from mmdata.core.stage import Partition


@SOURCES.register("coco")
class CocoSource(SpilledSource):
    """COCO captions JSON (+ optional instances JSON) -> image rows with captions and boxes.

    Rows follow the order of the captions file's ``images`` list, so partitions are
    stable across runs. Width and height come from the JSON; the image file is read by a
    later stage (read_images).
    """

    cache_prefix = "mmdata-coco"
    writes = ("image_id", "source", "split", "url", "path", "width_px", "height_px")
    writes += ("captions", "gold")

    def __init__(
        self,
        *,
        captions: InputPath,
        instances: InputPath | None = None,
        images: InputPath | None = None,
        split: str | None = None,
        karpathy: InputPath | None = None,
        keep_segmentation: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        """Args:
        captions: path of a COCO captions JSON (images + annotations with 'caption').
        instances: optional path of the matching instances JSON (boxes, categories).
        images: folder or URL prefix that holds the images' file_name.
        split: split name stored on every row (e.g. val2017).
        karpathy: optional Karpathy split file (dataset_coco.json); its split
            (train/restval/val/test) overrides ``split`` for the images it lists.
        keep_segmentation: keep polygons/RLE (as JSON text) on gold objects.
        cache_dir: where the per-partition spill files go (shared storage on a
            cluster); default: the system temp folder.
        """
        self.captions, self.instances, self.images = captions, instances, images
        self.split, self.karpathy, self.keep_segmentation = split, karpathy, keep_segmentation
        self.cache_dir = cache_dir

    @without_gc
    def read(self, partition: Partition) -> pa.Table:
        # Rebuilds the cache when this worker cannot see it (no shared storage).
        folder = self.spill_folder(partition)
        part = {
            kind: _group(read_spill(folder, kind, partition.index))
            for kind in ("captions", "objects", "karpathy")
        }
        names = dict(map(tuple, read_spill(folder, "categories", 0)))
        rows = [
            self._row(index, image, first, part, names)
            for index, image, first in read_spill(folder, "images", partition.index)
        ]
        return pa.Table.from_pylist(rows, schema=_ROW_SCHEMA)

    def _row(self, index: int, image: Any, first: int, part: dict, names: dict) -> dict:
        if not isinstance(image, dict) or not is_id(image.get("id")):
            found = (
                "has no 'id'"
                if not isinstance(image, dict) or "id" not in image
                else (f"has id {image['id']!r}, not an int or a string")
            )
            return {
                "image_id": f"coco:?images[{index}]",
                "source": "coco",
                "status": STATUS_ERROR,
                "reason": "missing_key" if "no 'id'" in found else "bad_id",
                "_detail": f"{self.captions}: images[{index}] {found}",
            }
        image_id = image["id"]
        captions, rejects = self._captions(part["captions"].get(image_id, []))
        objects, object_rejects = self._objects(part["objects"].get(image_id, []), image, names)
        karpathy = part["karpathy"].get(image_id)
        row: dict[str, Any] = {
            "image_id": f"coco:{image_id}",
            "source": "coco",
            "split": karpathy[0] if karpathy else self.split,
            "url": text_or_none(image.get("coco_url")),
            # a bad size is a reject (below); the row must still fit the schema
            "width_px": pixels_or_none(image.get("width")),
            "height_px": pixels_or_none(image.get("height")),
            "captions": captions,
            "gold": {"objects": objects, "relations": [], "regions": []},
            "_item_rejects": rejects + object_rejects or None,
        }
        file_name = image.get("file_name")
        if self.images and file_name:
            key = "url" if self.images.startswith(("http://", "https://")) else "path"
            row[key] = join(self.images, file_name)
        problem = _image_problem(image, index, first, row)
        if problem:
            row.update(
                status=STATUS_ERROR,
                reason=problem[0],
                _detail=f"{self.captions}: image id {image_id}: {problem[1]}",
            )
        return row

    def _captions(self, records: list) -> tuple[list[dict], list[dict]]:
        kept, rejects = [], []
        for ann, duplicate in records:
            problem = _caption_problem(ann, duplicate)
            if problem:
                rejects.append(
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
        return kept, rejects

    def _objects(self, records: list, image: dict, names: dict) -> tuple[list[dict], list[dict]]:
        kept, rejects = [], []
        for ann, duplicate in records:
            problem = _object_problem(ann, duplicate, names, image)
            if problem:
                rejects.append(
                    item_reject("object", ann["id"], problem[0], f"{self.instances}: {problem[1]}")
                )
            else:
                kept.append(self._object(ann, names))
        return kept, rejects

    def _object(self, ann: dict, names: dict) -> dict:
        segmentation = ann.get("segmentation") if self.keep_segmentation else None
        return {
            "object_id": str(ann["id"]),
            "category_id": ann["category_id"],
            "names": [names[ann["category_id"]]],
            "box_xywh_px": ann["bbox"],
            "score": None,
            "area_px": number_or_none(ann.get("area")),
            "iscrowd": bool(ann.get("iscrowd", 0)),
            "attributes": [],
            "synsets": [],
            "segmentation": json.dumps(segmentation) if segmentation is not None else None,
        }

    def spill_inputs(self) -> dict[str, str]:
        inputs = {"captions": self.captions, "instances": self.instances, "karpathy": self.karpathy}
        return {k: v for k, v in inputs.items() if v}

    def build_spill(self, folder: str, rows_per_partition: int) -> int:
        partition_of, count = _spill_images(self.captions, folder, rows_per_partition)
        _spill_by_image(
            self.captions,
            "annotations.item",
            ("id", "image_id", "caption"),
            "captions",
            partition_of,
            folder,
        )
        if self.instances:
            _spill_categories(self.instances, folder)
            _spill_by_image(
                self.instances,
                "annotations.item",
                ("id", "image_id", "bbox", "category_id"),
                "objects",
                partition_of,
                folder,
            )
        if self.karpathy:
            _spill_karpathy(self.karpathy, partition_of, folder)
        return count


def _spill_images(path: str, folder: str, rows_per_partition: int) -> tuple[dict, int]:
    """Spill ``images`` in order; returns image id -> partition, and the count.

    Each record carries the index of the first record with its id, so a duplicate is
    found whichever partition it falls in.
    """
    spill, partition_of, first_index, count = Spill(folder, "images"), {}, {}, 0
    for index, image in enumerate(iter_array(path, "images.item")):
        image_id = image.get("id") if isinstance(image, dict) else None
        image_id = image_id if is_id(image_id) else None  # such a row becomes a reject
        first_index.setdefault(image_id, index)
        partition_of.setdefault(image_id, index // rows_per_partition)
        spill.add(index // rows_per_partition, [index, image, first_index[image_id]])
        count = index // rows_per_partition + 1
    spill.flush()
    if not count:  # an empty list, or no list at all: only the latter is an error
        _require_top_keys(path, ("images", "annotations"))
    return partition_of, count


def _spill_by_image(
    path: str, prefix: str, keys: tuple[str, ...], kind: str, partition_of: dict, folder: str
) -> None:
    """Spill annotations to their image's partition, flagging repeated annotation ids."""
    spill, seen, strays, index = Spill(folder, kind), set(), [], -1
    for index, ann in enumerate(iter_array(path, prefix)):
        require_keys(ann, keys, path, f"annotations[{index}]")
        require_ids(ann, ("id", "image_id"), path, f"annotations[{index}]")
        if ann["image_id"] not in partition_of:
            strays.append(ann["image_id"])
            continue
        spill.add(partition_of[ann["image_id"]], [ann["image_id"], [ann, ann["id"] in seen]])
        seen.add(ann["id"])
    spill.flush()
    if index < 0:
        _require_top_keys(path, ("annotations",))
    if strays:
        # Boxes or captions of an image the captions file lacks would have no row.
        raise AnnotationError(
            f"{path}: has annotations for {len(set(strays))} image(s) not in the captions "
            f"file's 'images' (e.g. image_id {strays[0]}); give files of the same split"
        )


def _spill_categories(path: str, folder: str) -> None:
    spill, index = Spill(folder, "categories"), -1
    for index, category in enumerate(iter_array(path, "categories.item")):
        require_keys(category, ("id", "name"), path, f"categories[{index}]")
        if type(category["id"]) is not int:
            raise AnnotationError(
                f"{path}: categories[{index}]: id {category['id']!r} is not an int"
            )
        if not isinstance(category["name"], str):
            raise AnnotationError(f"{path}: categories[{index}]: name is not a string")
        spill.add(0, [category["id"], category["name"]])
    spill.flush()
    if index < 0:
        _require_top_keys(path, ("annotations", "categories"))


def _spill_karpathy(path: str, partition_of: dict, folder: str) -> None:
    """Karpathy splits by COCO id; images the captions file lacks are not ours to split."""
    spill = Spill(folder, "karpathy")
    for index, record in enumerate(iter_array(path, "images.item")):
        require_keys(record, ("cocoid", "split"), path, f"images[{index}]")
        require_ids(record, ("cocoid", "split"), path, f"images[{index}]")
        if record["cocoid"] in partition_of:
            spill.add(partition_of[record["cocoid"]], [record["cocoid"], record["split"]])
    spill.flush()


def _require_top_keys(path: str, keys: tuple[str, ...]) -> None:
    """A file that is not COCO fails here, naming the keys it lacks (a full event scan:
    called only when a list came back empty, so never on the happy path)."""
    found = {key for key, _ in _top_level_keys(path)}
    missing = [k for k in keys if k not in found]
    if missing:
        raise AnnotationError(f"{path}: top level lacks key(s) {missing}")


def _top_level_keys(path: str) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as handle:
        try:
            for prefix, event, value in ijson.parse(handle):
                if prefix == "" and event == "map_key":
                    yield value, event
        except ijson.JSONError as exc:
            raise AnnotationError(
                f"{path}: malformed JSON before byte {handle.tell()}: {exc}"
            ) from None


def _group(records: list) -> dict[Any, list]:
    grouped: dict[Any, list] = defaultdict(list)
    for image_id, value in records:
        grouped[image_id].append(value)
    return grouped


def _image_problem(image: dict, index: int, first: int, row: dict) -> tuple[str, str] | None:
    if first != index:
        return "duplicate_id", f"listed twice in images (first at images[{first}])"
    missing = [k for k in ("file_name", "width", "height") if k not in image]
    if missing:
        return "missing_key", f"lacks {missing}"
    if not isinstance(image["file_name"], str) or not image["file_name"]:
        return "bad_value", f"file_name {image['file_name']!r} is not a file name"
    problem = size_problem(image["width"], image["height"])
    if problem:
        return problem
    if not row["captions"]:
        return "no_captions", "no usable caption annotation refers to it"
    return None


def _caption_problem(ann: dict, duplicate: bool) -> tuple[str, str] | None:
    if duplicate:
        return "duplicate_id", f"caption annotation id {ann['id']} listed twice"
    if not isinstance(ann["caption"], str) or not ann["caption"].strip():
        return "empty_caption", f"caption annotation id {ann['id']} is empty"
    return None


def _object_problem(ann: dict, duplicate: bool, names: dict, image: dict) -> tuple[str, str] | None:
    if duplicate:
        return "duplicate_id", f"annotation id {ann['id']} listed twice"
    if type(ann["category_id"]) is not int or ann["category_id"] not in names:
        return "unknown_category", f"category_id {ann['category_id']} is not in 'categories'"
    return box_problem(ann["bbox"], image.get("width"), image.get("height"))


_ROW_SCHEMA = pa.schema(
    [IMAGE_SCHEMA.field(n) for n in (*CocoSource.writes, "status", "reason")]
    + [pa.field("_detail", pa.string()), pa.field("_item_rejects", pa.list_(ITEM_REJECT))]
)

"""Visual Genome JSON (image_data + objects/attributes/relationships/regions) -> image rows.

The real files are large (relationships.json is about 700 MB), so nothing here parses a
whole file. ``partitions`` streams image_data.json once, cuts its images into consecutive
chunks, then streams each annotation file once and spills every per-image record into a
JSON-lines file of the partition that owns the image (annotation.spill). ``read``
opens only the spill files of its own partition, so memory is bounded by one partition,
not by the corpus.

Quirks of the real files, handled below:

- the image id of a per-image record is ``image_id`` except in region_descriptions.json
  (and some older files), where it is ``id``;
- objects carry ``names`` (a list) in v1.2, ``name`` (a string) in older files and in the
  subject/object dicts of relationships;
- an object's id is ``object_id`` in v1.2, ``id`` in older files;
- v1.4 relationships merge duplicated objects: the endpoint keeps one ``object_id`` and
  lists the ids it absorbed in ``merged_object_ids`` (all of them mean the same object);
- v1.4-style per-image files hold one record (a JSON object), not an array of them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pyarrow as pa

from annotation.gcpause import without_gc
from annotation.jsonfile import AnnotationError, iter_array
from annotation.records import box_problem, is_id, pixels_or_none, size_problem, text_or_none
from annotation.spill import Spill, SpilledSource, iter_records, read_spill
from mmdata.core.args import InputPath
from mmdata.core.batch import ITEM_REJECT, item_reject
from mmdata.core.io import join
from mmdata.core.registry import SOURCES
from mmdata.core.schema import IMAGE_SCHEMA, STATUS_ERROR
from mmdata.core.stage import Partition

#: Recipe argument -> key of the per-image list in that file.
LIST_KEYS = {
    "objects": "objects",
    "attributes": "attributes",
    "relationships": "relationships",
    "region_descriptions": "regions",
}


@SOURCES.register("visual_genome")
class VisualGenomeSource(SpilledSource):
    """Visual Genome image_data.json (+ optional annotation files) -> image rows with gold.

    Rows follow image_data.json's order. Objects, attributes and relationships fill
    ``gold.objects``/``gold.relations`` (and the same graph in ``gold.scene_graph``);
    region descriptions fill ``gold.regions``. ``captions`` stays empty: VG's text is its
    region descriptions. Bad objects/regions/relations are dropped from the row and
    listed in ``_item_rejects``.
    """

    cache_prefix = "mmdata-vg"
    writes = ("image_id", "source", "split", "url", "path", "width_px", "height_px")
    writes += ("captions", "gold")

    def __init__(
        self,
        *,
        image_data: InputPath,
        objects: InputPath | None = None,
        attributes: InputPath | None = None,
        relationships: InputPath | None = None,
        region_descriptions: InputPath | None = None,
        images: InputPath | None = None,
        split: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        """Args:
        image_data: path of image_data.json (image_id, url, width, height).
        objects: objects.json / objects_v1_2.json.
        attributes: attributes.json (objects with their attribute strings).
        relationships: relationships.json (v1.2 or v1.4 layout).
        region_descriptions: region_descriptions.json (phrases with boxes).
        images: folder (fills ``path``) or http(s) prefix (fills ``url``) holding
            ``{image_id}.jpg``; without it ``url`` is image_data's.
        split: split name stored on every row.
        cache_dir: where the per-partition spill files go (shared storage on a
            cluster); default: the system temp folder. A sub-folder named from a hash
            of the inputs is used, so one cache_dir serves many inputs.
        """
        self.image_data, self.images, self.split = image_data, images, split
        self.cache_dir = cache_dir
        given = zip(LIST_KEYS, (objects, attributes, relationships, region_descriptions))
        #: Annotation files in the order they are applied: objects first so the
        #: other files find their objects; relationships may add missing ones.
        self.files: dict[str, str] = {k: v for k, v in given if v}

    @without_gc
    def read(self, partition: Partition) -> pa.Table:
        # Rebuilds the cache when this worker cannot see it (a node without shared storage).
        folder = self.spill_folder(partition)
        images = read_spill(folder, "image_data", partition.index)
        annotations = {k: _group(read_spill(folder, k, partition.index)) for k in self.files}
        rows = [self._row(index, image, annotations, repeat) for index, image, repeat in images]
        return pa.Table.from_pylist(rows, schema=_ROW_SCHEMA)

    def _row(self, index: int, image: Any, annotations: dict, repeat: bool) -> dict:
        image_id = _image_id(image)
        if image_id is None:
            return _error_row(
                f"vg:?image_data[{index}]",
                "missing_key",
                f"{self.image_data}: image_data[{index}] has no 'image_id'",
            )
        row: dict[str, Any] = {
            "image_id": f"vg:{image_id}",
            "source": "vg",
            "split": self.split,
            "url": text_or_none(image.get("url")),
            # a bad size is a reject (below); the row must still fit the schema
            "width_px": pixels_or_none(image.get("width")),
            "height_px": pixels_or_none(image.get("height")),
            "captions": [],
        }
        if self.images:
            key = "url" if self.images.startswith(("http://", "https://")) else "path"
            row[key] = join(self.images, f"{image_id}.jpg")
        problem = _image_problem(image, repeat)
        if problem:
            detail = f"{self.image_data}: image id {image_id}: {problem[1]}"
            return {**row, **_error_row(row["image_id"], problem[0], detail)}
        gold = _Gold(image_id, image["width"], image["height"])
        for kind, path in self.files.items():
            gold.add(kind, path, annotations[kind].get(image_id, []))
        return {**row, "gold": gold.gold(), "_item_rejects": gold.rejects}

    def spill_inputs(self) -> dict[str, str]:
        return {"image_data": self.image_data, **self.files}

    def build_spill(self, folder: str, rows_per_partition: int) -> int:
        partition_of, count = _spill_images(self.image_data, folder, rows_per_partition)
        for kind, path in self.files.items():
            _spill_annotations(path, kind, partition_of, folder)
        return count


class _Gold:
    """Collects one image's gold objects, relations and regions, and what was dropped."""

    def __init__(self, image_id: Any, width: Any, height: Any) -> None:
        self.image_id, self.width, self.height = image_id, width, height
        self.objects: list[dict] = []
        self.index: dict[Any, int] = {}  # object id (merged ids too) -> index in objects
        self.dropped: set[Any] = set()  # rejected object ids: relations naming them dangle
        self.relations: list[dict] = []
        self.regions: list[dict] = []
        self.rejects: list[dict] = []
        self.ids: dict[str, set[Any]] = {"relation": set(), "region": set()}
        self.path = ""

    def add(self, kind: str, path: str, items: list) -> None:
        """Apply the items one annotation file holds for this image."""
        self.path = path
        handler = getattr(self, f"_{kind}")  # _objects, _attributes, ...
        for item in items:
            handler(item)

    def gold(self) -> dict:
        """The GOLD struct, with the scene graph in the caption parser's shape."""
        sg_objects = [_sg_object(o) for o in self.objects]
        keys = ("subject", "predicate", "object")
        sg_relations = [{**{k: r[k] for k in keys}, "span": None} for r in self.relations]
        return {
            "objects": self.objects,
            "relations": self.relations,
            "regions": self.regions,
            "scene_graph": {"objects": sg_objects, "relations": sg_relations},
        }

    def _reject(self, kind: str, item_id: Any, reason: str, detail: str) -> None:
        where = f"{self.path}: image id {self.image_id}: {detail}"
        self.rejects.append(item_reject(kind, item_id, reason, where))

    def _objects(self, item: Any) -> None:
        object_id = _object_id(item)
        problem = _object_problem(item, object_id, self.width, self.height)
        if problem is None and object_id in self.index:
            problem = ("duplicate_id", f"object id {object_id} listed twice")
        elif problem is not None and object_id is not None:
            self.dropped.add(object_id)
        if problem:
            self._reject("object", object_id, *problem)
            return
        self._append(object_id, item, [])

    def _attributes(self, item: Any) -> None:
        index = self._resolve(item)
        if index is None:
            return
        merged = self.objects[index]["attributes"]
        merged.extend(a for a in _strings(item.get("attributes")) if a not in merged)

    def _relationships(self, item: Any) -> None:
        relation_id = (
            item.get("relationship_id", item.get("id")) if isinstance(item, dict) else None
        )
        relation_id = relation_id if is_id(relation_id) else None
        problem = _missing(item, ("predicate", "subject", "object"), relation_id, "relationship_id")
        if problem is None and not isinstance(item["predicate"], str):
            problem = ("bad_value", f"predicate {item['predicate']!r} is not a string")
        if problem is None and relation_id in self.ids["relation"]:
            problem = ("duplicate_id", f"relationship id {relation_id} listed twice")
        if problem:
            self._reject("relation", relation_id, *problem)
            return
        self.ids["relation"].add(relation_id)
        # Both ends are resolved (not short-circuited) so each bad end is recorded.
        subject, obj = self._resolve(item["subject"]), self._resolve(item["object"])
        if subject is None or obj is None:
            self._reject("relation", relation_id, "dangling_relation", "subject or object dropped")
            return
        self.relations.append(
            {
                "relation_id": str(relation_id),
                "subject": subject,
                "predicate": item["predicate"],
                "object": obj,
                "synsets": _strings(item.get("synsets")),
            }
        )

    def _region_descriptions(self, item: Any) -> None:
        region_id = item.get("region_id") if isinstance(item, dict) else None
        region_id = region_id if is_id(region_id) else None
        problem = _missing(item, ("phrase", "x", "y", "width", "height"), region_id, "region_id")
        if problem is None:
            box = [item["x"], item["y"], item["width"], item["height"]]
            problem = box_problem(box, self.width, self.height)
        if problem is None and not isinstance(item["phrase"], str):
            problem = ("bad_value", f"phrase {item['phrase']!r} is not a string")
        if problem is None and region_id in self.ids["region"]:
            problem = ("duplicate_id", f"region id {region_id} listed twice")
        if problem:
            self._reject("region", region_id, *problem)
            return
        self.ids["region"].add(region_id)
        self.regions.append(
            {"region_id": str(region_id), "text": item["phrase"], "box_xywh_px": box}
        )

    def _resolve(self, item: Any) -> int | None:
        """Index of the object ``item`` names, adding it when new; None when dropped."""
        object_id = _object_id(item)
        ids = [i for i in (object_id, *_merged_ids(item)) if i is not None]
        for known in ids:
            if known in self.index:
                # The first box seen for an id wins; v1.4 repeats ids with other boxes.
                return self._alias(ids, self.index[known])
        if any(i in self.dropped for i in ids):
            return None
        problem = _object_problem(item, object_id, self.width, self.height)
        if problem:
            self._reject("object", object_id, *problem)
            self.dropped.update(ids)
            return None
        return self._append(object_id, item, ids[1:])

    def _alias(self, ids: list, index: int) -> int:
        for object_id in ids:
            self.index.setdefault(object_id, index)
        return index

    def _append(self, object_id: Any, item: dict, merged: list) -> int:
        self.objects.append(
            {
                "object_id": str(object_id),
                "names": _names(item),
                "box_xywh_px": [item["x"], item["y"], item["w"], item["h"]],
                "attributes": _strings(item.get("attributes")),
                "synsets": _strings(item.get("synsets")),
            }
        )
        return self._alias([object_id, *merged], len(self.objects) - 1)


def _sg_object(obj: dict) -> dict:
    name = obj["names"][0] if obj["names"] else None
    return {
        "head": name.lower() if name else None,
        "text": name,
        "span": None,
        "count": None,
        "attributes": [{"text": a, "span": None} for a in obj["attributes"]],
    }


def _image_id(record: Any) -> Any:
    """The id of an image_data record: ``image_id``, or ``id`` in older releases."""
    if not isinstance(record, dict):
        return None
    value = record.get("image_id", record.get("id"))
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


def _image_problem(image: dict, repeat: bool) -> tuple[str, str] | None:
    if repeat:
        return "duplicate_id", "listed twice in image_data"
    missing = [k for k in ("width", "height") if k not in image]
    if missing:
        return "missing_key", f"lacks {missing}"
    return size_problem(image["width"], image["height"])


def _error_row(image_id: str, reason: str, detail: str) -> dict:
    return dict(image_id=image_id, source="vg", status=STATUS_ERROR, reason=reason, _detail=detail)


def _object_id(item: Any) -> Any:
    # v1.2 uses object_id; older releases (and some endpoints) use id.
    value = item.get("object_id", item.get("id")) if isinstance(item, dict) else None
    return value if is_id(value) else None  # a list or a float there: no usable id


def _merged_ids(item: Any) -> list:
    merged = item.get("merged_object_ids") if isinstance(item, dict) else None
    return [i for i in merged if is_id(i)] if isinstance(merged, list) else []


def _names(item: dict) -> list[str]:
    # v1.2 objects and merged v1.4 endpoints carry 'names'; other endpoints 'name'.
    names = item.get("names")
    if isinstance(names, list):
        return [n for n in names if isinstance(n, str)]
    name = item.get("name")
    return [name] if isinstance(name, str) else []


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _missing(item: Any, keys: tuple[str, ...], item_id: Any, id_key: str) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return "missing_key", f"{type(item).__name__} where an object was expected"
    if item_id is not None and item.keys() >= set(keys):  # the common case, in C
        return None
    missing = [k for k in keys if k not in item]
    if item_id is None:  # absent, or not an int or a string
        missing.append(id_key)
    return ("missing_key", f"lacks a usable {missing}") if missing else None


def _object_problem(item: Any, object_id: Any, width: Any, height: Any) -> tuple[str, str] | None:
    problem = _missing(item, ("x", "y", "w", "h"), object_id, "object_id")
    if problem is None and not _names(item):
        problem = ("missing_key", "lacks ['names'] (a list of strings)")
    if problem is None:
        problem = box_problem([item["x"], item["y"], item["w"], item["h"]], width, height)
    return problem


def _group(lines: list) -> dict[Any, list]:
    by_image: dict[Any, list] = defaultdict(list)
    for image_id, items in lines:
        by_image[image_id].extend(items)  # a file may split one image over records
    return by_image


def _spill_images(path: str, folder: str, rows_per_partition: int) -> tuple[dict, int]:
    """Spill image_data into chunks; returns image id -> partition, and the count."""
    spill, partition_of, count = Spill(folder, "image_data"), {}, 0
    for index, record in enumerate(iter_array(path)):
        image_id = _image_id(record)
        # The first listing owns the annotations; a repeat becomes an error row, in
        # whichever partition it falls.
        repeat = image_id is not None and image_id in partition_of
        spill.add(index // rows_per_partition, [index, record, repeat])
        if image_id is not None:
            partition_of.setdefault(image_id, index // rows_per_partition)
        count = index + 1
    spill.flush()
    return partition_of, math.ceil(count / rows_per_partition)


def _spill_annotations(path: str, kind: str, partition_of: dict, folder: str) -> None:
    spill, key = Spill(folder, kind), LIST_KEYS[kind]
    for index, record in enumerate(iter_records(path)):
        image_id = _record_image_id(record, path, index)
        if image_id not in partition_of:
            raise AnnotationError(f"{path}: image id {image_id} is not in image_data")
        if not isinstance(record.get(key), list):
            raise AnnotationError(f"{path}: image id {image_id} has no {key!r} list")
        spill.add(partition_of[image_id], [image_id, record[key]])
    spill.flush()


def _record_image_id(record: Any, path: str, index: int) -> Any:
    # region_descriptions.json names the image 'id', the other files 'image_id'.
    image_id = _image_id(record)
    if image_id is None:
        raise AnnotationError(f"{path}: record {index} has no 'image_id' (or 'id')")
    return image_id


_ROW_SCHEMA = pa.schema(
    [IMAGE_SCHEMA.field(n) for n in (*VisualGenomeSource.writes, "status", "reason")]
    + [pa.field("_detail", pa.string()), pa.field("_item_rejects", pa.list_(ITEM_REJECT))]
)

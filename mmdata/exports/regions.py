"""Region features out of a catalog, in the layouts existing VLP code loads.

- ``lxmert-tsv``: LXMERT's (and py-bottom-up-attention's) tab-separated file, one image
  per line, no header: ``img_id, img_h, img_w, objects_id, objects_conf, attrs_id,
  attrs_conf, num_boxes, boxes, features``; arrays as base64 of little-endian int64 (ids)
  and float32 (the rest); class ids without background (mmdata's ``i`` is ``i - 1``).
- ``uniter-npz``: UNITER's per-image ``.npz`` (the input of its convert_imgdir.py):
  ``norm_bb`` (n x 6: x1, y1, x2, y2, w, h normalised; UNITER appends the area on load),
  ``features``, ``conf`` and ``soft_labels`` (n x classes, background first), float32.

Rows stream out of DuckDB a batch at a time, so memory stays flat for any corpus size.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mmdata.catalog.store import Catalog, sql_literal
from mmdata.core.errors import MmdataError
from mmdata.core.io import PARTIAL_SUFFIX, remove_partials, written_whole
from mmdata.core.progress import Progress
from mmdata.exports import REGION_FORMATS as FORMATS
from mmdata.models.regions.rows import class_probs_of, features_of
from mmdata.models.regions.vocab import caffe_to_lxmert

LXMERT_FIELDS = (
    "img_id",
    "img_h",
    "img_w",
    "objects_id",
    "objects_conf",
    "attrs_id",
    "attrs_conf",
    "num_boxes",
    "boxes",
    "features",
)


class ExportError(MmdataError, ValueError):
    """The corpus cannot be written in the asked layout (the message says why)."""


def _regions_filter(corpus: str | None, extractor: str | None) -> str:
    """The SQL condition picking the images whose regions are exported."""
    where = ["regions IS NOT NULL"]
    if corpus:
        where.append(f"corpus = {sql_literal(corpus)}")
    if extractor:
        where.append(f"regions.extractor_id = {sql_literal(extractor)}")
    return " AND ".join(where)


def region_rows(
    catalog: str | Path, corpus: str | None = None, extractor: str | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(image_id, regions)`` of every image with regions, in catalog order."""
    where = _regions_filter(corpus, extractor)
    sql = f"SELECT image_id, regions FROM images WHERE {where} ORDER BY image_id"
    with Catalog(catalog).read() as con:
        reader = con.sql(sql).to_arrow_reader(256)
        for batch in reader:
            ids, regions = batch.column("image_id"), batch.column("regions")
            yield from zip(ids.to_pylist(), regions.to_pylist())


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def lxmert_line(image_id: str, regions: dict[str, Any]) -> str:
    """One TSV line of LXMERT's layout for one image."""
    if "\t" in image_id or "\n" in image_id:
        raise ExportError(f"{image_id!r}: an image id with a tab or newline cannot go in a TSV")
    n = regions["num_boxes"]
    try:
        objects = caffe_to_lxmert(np.asarray(regions["object_ids"], dtype="<i8"))
    except ValueError as exc:
        raise ExportError(f"{image_id}: a box's {exc}") from None
    attrs = regions.get("attribute_ids")
    attr_ids = np.zeros(n, "<i8") if attrs is None else np.asarray(attrs, "<i8") - 1
    # models without an attribute head (or a box whose best is "none") get id 0, conf 0
    attr_conf = np.zeros(n, "<f4")
    if regions.get("attribute_conf") is not None:
        attr_conf = np.where(attr_ids >= 0, np.asarray(regions["attribute_conf"], "<f4"), 0)
    attr_ids = np.maximum(attr_ids, 0)
    values = [
        image_id,
        str(regions["image_height_px"]),
        str(regions["image_width_px"]),
        _b64(objects),
        _b64(np.asarray(regions["object_conf"], "<f4")),
        _b64(attr_ids),
        _b64(attr_conf.astype("<f4")),
        str(n),
        _b64(np.asarray(regions["boxes_xyxy_px"], "<f4").reshape(n, 4)),
        _b64(features_of(regions).astype("<f4")),
    ]
    return "\t".join(values)


def uniter_arrays(image_id: str, regions: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays of one UNITER ``.npz``."""
    probs = class_probs_of(regions)
    if probs is None:
        raise ExportError(
            f"{image_id}: no soft class labels (UNITER reads soft_labels): run the regions "
            "stage with soft_labels: true"
        )
    geometry = np.asarray(regions["boxes_norm7"], dtype=np.float32).reshape(-1, 7)
    return {
        "norm_bb": geometry[:, :6],
        "features": features_of(regions).astype(np.float32),
        "conf": np.asarray(regions["object_conf"], dtype=np.float32),
        "soft_labels": probs.astype(np.float32),
    }


def npz_name(image_id: str) -> str:
    """A file name for ``image_id`` (``coco:397133`` -> ``coco_397133.npz``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", image_id) + ".npz"


def export_regions(
    catalog: str | Path,
    out: str | Path,
    fmt: str,
    corpus: str | None = None,
    extractor: str | None = None,
    progress: bool | str = False,
) -> int:
    """Write every image's regions to ``out`` in ``fmt``; returns the number of images.
    ``progress``: as for ``run_recipe`` (a count of images and their rate).

    ``lxmert-tsv`` writes the file ``out``; ``uniter-npz`` writes one file per image into
    the folder ``out``. A partial file is never left under the final name.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    out = Path(out)
    count = 0
    if fmt == "lxmert-tsv":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_name(out.name + PARTIAL_SUFFIX).unlink(missing_ok=True)  # a killed export's
        with (
            Progress(None, "image", progress, desc=fmt) as bar,
            written_whole(out) as partial,
            partial.open("w", encoding="utf-8", newline="\n") as fh,
        ):
            for image_id, regions in region_rows(catalog, corpus, extractor):
                fh.write(lxmert_line(image_id, regions) + "\n")
                count += 1
                bar.update(1, rows=1)
        return count
    _check_soft_labels(catalog, corpus, extractor)
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)  # files a killed export was writing
    with Progress(None, "image", progress, desc=fmt) as bar:
        for image_id, regions in region_rows(catalog, corpus, extractor):
            with written_whole(out / npz_name(image_id)) as partial, partial.open("wb") as fh:
                np.savez_compressed(fh, **uniter_arrays(image_id, regions))
            count += 1
            bar.update(1, rows=1)
    return count


def _check_soft_labels(catalog: str | Path, corpus: str | None, extractor: str | None) -> None:
    """Refuse, before writing anything, a corpus whose regions lack the class
    distributions UNITER's ``soft_labels`` array needs (a regions stage option)."""
    where = _regions_filter(corpus, extractor)
    sql = (
        "SELECT count(*) FILTER (WHERE regions.class_probs_f16 IS NULL), count(*) "
        f"FROM images WHERE {where}"
    )
    _, [(missing, total)] = Catalog(catalog).query(sql)
    if missing:
        raise ExportError(
            f"uniter-npz needs soft class labels and {missing} of {total} images with regions "
            f"{'in ' + corpus + ' ' if corpus else ''}have none: add 'soft_labels: true' to the "
            "recipe's regions stage and run it again"
        )

"""Read image files named by the ``path`` column, decode them, and record what they are."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from mmdata.core.batch import WORK_SCHEMA, mark, set_columns
from mmdata.core.imagefile import MAX_PIXELS, ImageError, decode_or_reject
from mmdata.core.io import read_bytes
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_ERROR
from mmdata.core.stage import Stage


@STAGES.register("read_images")
class ReadImages(Stage):
    """Decode each row's image file; fill bytes, size, format and sha256.

    Rows whose file is missing or does not decode become errors (rejects with
    ``on_error: record``) whose detail names the file.
    """

    reads = ("path",)
    writes = ("image_bytes", "width_px", "height_px", "format", "sha256")

    def __init__(
        self, *, keep_bytes: bool = True, max_pixels: int = MAX_PIXELS, check_size: bool = True
    ) -> None:
        """Args:
        keep_bytes: store the encoded file in ``image_bytes``.
        max_pixels: refuse images with more pixels (Pillow's bomb limit by default).
        check_size: when the source gave width/height, the file must agree.
        """
        if max_pixels <= 0:
            raise ValueError(f"max_pixels must be > 0, got {max_pixels}")
        self.keep_bytes, self.max_pixels, self.check_size = keep_bytes, max_pixels, check_size

    def process(self, table: pa.Table) -> pa.Table:
        out: dict[str, list] = {
            k: [] for k in ("image_bytes", "width_px", "height_px", "format", "sha256")
        }
        errors: dict[int, tuple[str, str]] = {}
        rows = table.select(["path", "width_px", "height_px"]).to_pylist()
        for i, row in enumerate(rows):
            try:
                values = self._read_one(row)
            except ImageError as exc:
                errors[i] = (exc.reason, f"{row['path']}: {exc}")
                values = {
                    "image_bytes": None,
                    "width_px": row["width_px"],
                    "height_px": row["height_px"],
                    "format": None,
                    "sha256": None,
                }
            for key, value in values.items():
                out[key].append(value)
        table = set_columns(
            table, {k: pa.array(v, WORK_SCHEMA.field(k).type) for k, v in out.items()}
        )
        for reason in sorted({r for r, _ in errors.values()}):
            mask = [i in errors and errors[i][0] == reason for i in range(table.num_rows)]
            detail = [errors[i][1] if i in errors else None for i in range(table.num_rows)]
            table = mark(table, pa.array(mask), STATUS_ERROR, reason, pa.array(detail, pa.string()))
        return table

    def _read_one(self, row: dict) -> dict:
        if not row["path"]:
            raise ImageError("missing_path", "row has no image path")
        try:
            data = read_bytes(row["path"])
        except FileNotFoundError as exc:
            raise ImageError("file_not_found", str(exc)) from exc
        except OSError as exc:
            raise ImageError("read_error", f"{type(exc).__name__}: {exc}") from exc
        image = decode_or_reject(data, self.max_pixels)
        expected = (row["width_px"], row["height_px"])
        if self.check_size and None not in expected and expected != image.size:
            raise ImageError(
                "size_mismatch",
                f"file is {image.width}x{image.height}, "
                f"annotation says {expected[0]}x{expected[1]}",
            )
        return {
            "image_bytes": data if self.keep_bytes else None,
            "width_px": image.width,
            "height_px": image.height,
            "format": (image.format or "").lower() or None,
            "sha256": hashlib.sha256(data).hexdigest(),
        }

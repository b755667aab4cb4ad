"""Each image's key for a voken image set: the vokenizer's image side, as a layer.

The original extracts the keys of an image set once (its ``extract_vision_keys.py``) and
searches them for every token. Here the image set is a corpus and the keys are a layer
of it (``layer_of: <corpus>``), so a new vokenizer adds a new layer and never rewrites
the corpus. Each key row names the vokenizer that made it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from mmdata.core.args import InputPath
from mmdata.core.batch import mark
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_ERROR
from mmdata.core.stage import Resources, Stage

#: The layer field: which vokenizer, and the unit key (float32, its ``dim`` numbers).
VOKEN_KEY = pa.struct([("vokenizer_id", pa.string()), ("key", pa.list_(pa.float32()))])


@STAGES.register("voken_keys")
class VokenKeys(Stage):
    """Write ``voken_key`` for every image: the vokenizer's image side on the image's
    region features (``regions_*`` vokenizers) or its pixels (``backbone``). An image
    without what the vokenizer needs becomes an error row (it keeps its place)."""

    reads = ("regions", "image_bytes")
    layer_fields = (pa.field("voken_key", VOKEN_KEY),)
    stateful = True
    default_resources = Resources(num_cpus=1.0, batch_size=256)

    def __init__(self, *, vokenizer: InputPath, device: str = "auto") -> None:
        """Args:
        vokenizer: a saved vokenizer folder (``mmdata train-vokenizer --out``).
        device: auto (cuda when available), cpu, cuda or cuda:N.
        """
        self.vokenizer, self.device = str(vokenizer), device
        self._model: Any = None

    def setup(self) -> None:
        """Load the vokenizer once per worker."""
        if self._model is not None:
            return
        from mmdata.core.devices import resolve_device
        from mmdata.models.vokenizer import load_vokenizer

        self._model, _, self._id = load_vokenizer(self.vokenizer, resolve_device(self.device))

    def process(self, table: pa.Table) -> pa.Table:
        import torch

        self.setup()
        config = self._model.config
        device = next(self._model.parameters()).device
        keys: list[dict | None] = [None] * table.num_rows
        errors: dict[int, str] = {}
        if config.image == "backbone":
            inputs, rows = self._pixels(table, errors)
        else:
            inputs, rows = self._regions(table, errors)
        if rows:
            with torch.inference_mode():
                if config.image == "backbone":
                    vectors = self._model.encode_pixels(inputs.to(device))
                else:
                    vectors = self._model.encode_regions(*(t.to(device) for t in inputs))
            for row, vector in zip(rows, vectors.float().cpu().numpy()):
                keys[row] = {"vokenizer_id": self._id, "key": vector.tolist()}
        position = table.schema.get_field_index("voken_key")
        table = table.set_column(position, "voken_key", pa.array(keys, VOKEN_KEY))
        if errors:
            bad = pa.array([i in errors for i in range(table.num_rows)])
            detail = pa.array([errors.get(i) for i in range(table.num_rows)], pa.string())
            table = mark(table, bad, STATUS_ERROR, "no_voken_input", detail)
        return table

    def _regions(self, table: pa.Table, errors: dict[int, str]) -> tuple[Any, list[int]]:
        import torch

        from mmdata.models.regions.rows import features_of

        config = self._model.config
        n = config.max_regions
        features, masks, rows = [], [], []
        ids = table.column("image_id").to_pylist()
        for i, regions in enumerate(table.column("regions").to_pylist()):
            if not regions or not regions.get("num_boxes"):
                errors[i] = f"{ids[i]}: no regions (run the regions stage first)"
                continue
            array = torch.from_numpy(features_of(regions)[:n].astype("float32"))
            if array.shape[1] != config.feature_dim:
                errors[i] = (
                    f"{ids[i]}: regions have {array.shape[1]} features, the vokenizer "
                    f"takes {config.feature_dim}"
                )
                continue
            padded = torch.zeros(n, config.feature_dim)
            padded[: len(array)] = array
            mask = torch.zeros(n, dtype=torch.bool)
            mask[: len(array)] = True
            features.append(padded)
            masks.append(mask)
            rows.append(i)
        if not rows:
            return None, rows
        return (torch.stack(features), torch.stack(masks)), rows

    def _pixels(self, table: pa.Table, errors: dict[int, str]) -> tuple[Any, list[int]]:
        import torch

        from mmdata.core.imagefile import ImageError
        from mmdata.models.vokenizer import VokenizerError, pixels

        size = self._model.config.image_size
        images, rows = [], []
        ids = table.column("image_id").to_pylist()
        for i, data in enumerate(table.column("image_bytes").to_pylist()):
            try:
                images.append(pixels(data, size))
                rows.append(i)
            except (ImageError, VokenizerError) as exc:
                errors[i] = f"{ids[i]}: {exc}"
        return (torch.stack(images) if images else None), rows

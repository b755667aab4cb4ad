"""An open_clip model loaded from a local checkpoint, embedding images and captions for
the CLIP score (cosine similarity). torch and open_clip are imported when it loads."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmdata.core.devices import autocast, resolve_device
from mmdata.core.errors import MmdataError
from mmdata.core.imagefile import MAX_PIXELS, ImageError, decode_or_reject, eight_bit

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


class ClipModelError(MmdataError, RuntimeError):
    """The CLIP model could not be loaded; the message names the checkpoint and model."""


def load_clip(
    model: str, checkpoint: str, model_config: str | None, device: str
) -> tuple[Any, Callable, Callable]:
    """``(model, preprocess, tokenizer)``, the weights loaded by open_clip's own loader.

    Raises:
        ClipModelError: open_clip missing, unknown architecture, or a checkpoint that is
            not a local file or does not fit the architecture.
    """
    try:
        import open_clip
    except ImportError as exc:
        raise ClipModelError("clip_score_filter needs open_clip: pip install mmdata[clip]") from exc
    where = f"model {model!r} with checkpoint {checkpoint}"
    # A path that is not a file would be tried as a pretrained tag (a download).
    if not Path(checkpoint).is_file():
        raise ClipModelError(f"cannot load {where}: the checkpoint is not a local file")
    if model_config:
        open_clip.add_model_config(model_config)
    if model not in open_clip.list_models():
        raise ClipModelError(f"cannot load {where}: open_clip has no architecture {model!r}")
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=checkpoint, device=device
        )
        tokenizer = open_clip.get_tokenizer(model)
    except Exception as exc:  # noqa: BLE001 - open_clip raises anything, AssertionError included
        raise ClipModelError(f"cannot load {where}: {_describe(exc)}") from exc
    return clip.eval(), preprocess, tokenizer  # create_model leaves it in training mode


def _describe(exc: Exception, limit: int = 400) -> str:
    """One line for the CLI; torch's messages run to paragraphs (the cause keeps them)."""
    text = " ".join(str(exc).split()) or "empty or truncated file?"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def check_model_config(path: str, model: str) -> None:
    """Fail early where open_clip would fail obscurely or silently.

    open_clip registers a config under its file's stem, and skips a JSON file without
    embed_dim, vision_cfg and text_cfg without a word.
    """
    config_path = Path(path)
    if config_path.stem != model:
        raise ValueError(
            f"model {model!r} must be the model_config file's stem {config_path.stem!r} "
            "(open_clip registers the config under that name)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"model_config {path} is not a readable JSON file: {exc}") from exc
    missing = [key for key in _CONFIG_KEYS if not isinstance(config, dict) or key not in config]
    if missing:
        raise ValueError(f"model_config {path} lacks {', '.join(missing)}")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ClipScorer:
    """An open_clip model on its device: L2-normalised image and text embeddings, in
    micro-batches, with fp16/bf16 autocast on CUDA."""

    def __init__(
        self,
        model: str,
        checkpoint: str,
        model_config: str | None,
        device: str,
        precision: str,
        micro_batch: int,
    ) -> None:
        import torch

        started = time.perf_counter()
        device = resolve_device(device, ClipModelError)
        checkpoint = str(Path(checkpoint).resolve())
        self.model, self.preprocess, self.tokenizer = load_clip(
            model, checkpoint, model_config, device
        )
        self.device = torch.device(device)
        self.precision = precision if self.device.type == "cuda" else "fp32"
        if self.precision != precision:
            log.warning("clip_score_filter: no CUDA here, so fp32 instead of %s", precision)
        self.micro_batch = micro_batch
        log.info(
            "clip_score_filter: %s from %s on %s (%s) in %.1f s",
            model, checkpoint, device, self.precision, time.perf_counter() - started,
        )  # fmt: skip

    def encode_images(
        self, images: list[bytes | None], todo: list[int]
    ) -> tuple[list[int], torch.Tensor | None, dict[int, tuple[str, str]]]:
        """Embeddings of ``images[i]`` for ``i`` in ``todo``: (the rows embedded, their
        embeddings in that order, ``{row: (reason, detail)}`` for images not usable)."""
        import torch

        rows, features, errors = [], [], {}
        for chunk in _chunks(todo, self.micro_batch):
            pixels = []
            for row in chunk:
                try:
                    pixels.append(self._pixels(images[row]))
                    rows.append(row)
                except ImageError as exc:
                    errors[row] = (exc.reason, str(exc))
            if pixels:
                features.append(self._embed(self.model.encode_image, torch.stack(pixels)))
        return rows, (torch.cat(features) if features else None), errors

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """One embedding per text."""
        import torch

        chunks = _chunks(list(range(len(texts))), self.micro_batch)
        tokens = (self.tokenizer([texts[i] for i in chunk]) for chunk in chunks)
        return torch.cat([self._embed(self.model.encode_text, t) for t in tokens])

    def _pixels(self, data: bytes | None) -> torch.Tensor:
        if data is None:
            raise ImageError("missing_image_bytes", "no image_bytes (read_images keep_bytes off?)")
        # open_clip's transforms convert to RGB themselves; 16-bit grey must not clip
        image = eight_bit(decode_or_reject(data, MAX_PIXELS))
        try:
            return self.preprocess(image)
        except (OSError, ValueError) as exc:  # e.g. a mode Pillow cannot convert to RGB
            raise ImageError("image_decode_error", f"{type(exc).__name__}: {exc}") from exc

    def _embed(self, encode: Callable, batch: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 embeddings on the CPU, computed on the model's device."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.precision):
            features = encode(batch.to(self.device)).float()
        # Normalised after the cast so fp16 runs divide in float32.
        return torch.nn.functional.normalize(features, dim=-1).cpu()

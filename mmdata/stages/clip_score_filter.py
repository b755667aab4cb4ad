"""Drop captions that an open_clip model says do not match their image (the CLIP score).

The CLIP score is the cosine similarity of the image's and the caption's embeddings.
LAION-2B kept pairs scoring at least 0.28 with OpenAI's ViT-B/32 (DataComp's ``laion``
baseline); DataComp's ViT-L/14 baselines keep a top fraction of the pool instead, so a
threshold only means something for the model it was chosen with.

torch and open_clip are imported when the model loads, never when a recipe is checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from mmdata.core.args import InputPath
from mmdata.core.batch import ITEM_REJECT, WORK_SCHEMA, item_reject, mark, set_columns
from mmdata.core.devices import resolve_device
from mmdata.core.errors import MmdataError
from mmdata.core.imagefile import ImageError, decode_or_reject, eight_bit
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_ERROR, STATUS_OK, STATUS_REJECTED
from mmdata.core.stage import Resources, Stage

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_MAX_PIXELS = 89_478_485  # Pillow's bomb limit, as in read_images
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


@STAGES.register("clip_score_filter")
class ClipScoreFilter(Stage):
    """Drop each caption whose CLIP score with its row's image is below ``min_score``.

    Dropped captions go to the rejects (reason ``low_clip_score``, the score in the
    detail); a row left with no caption is rejected with the same reason. Kept captions
    are unchanged. Rows with no caption are left alone; rows whose ``image_bytes`` do not
    decode become errors. For a GPU under Ray, give the stage ``resources: {num_gpus: 1}``.
    """

    reads = ("image_bytes", "captions")
    writes = ("captions",)
    stateful = True
    default_resources = Resources(num_cpus=1, batch_size=256)

    def __init__(
        self,
        *,
        checkpoint: InputPath,
        model: str = "ViT-B-32",
        model_config: InputPath | None = None,
        min_score: float = 0.28,
        device: str = "auto",
        precision: Literal["fp32", "fp16", "bf16"] = "fp32",
        micro_batch: int = 64,
    ) -> None:
        """Args:
        checkpoint: local open_clip/OpenCLIP checkpoint (state dict, .pt/.bin/.safetensors),
            loaded by open_clip itself. OpenAI's TorchScript files are refused.
        model: open_clip architecture the checkpoint was trained with. OpenAI's weights
            (and early LAION ones) need the ``-quickgelu`` variant: the wrong one loads
            without error and gives wrong scores.
        model_config: JSON config of an architecture open_clip lacks; ``model`` must be
            its file stem.
        min_score: keep captions scoring at least this cosine similarity (-1..1).
        device: auto (cuda when available), cpu, cuda or cuda:N.
        precision: fp32, or fp16/bf16 autocast on cuda.
        micro_batch: images or captions per forward pass.
        """
        self.model = model.replace("/", "-")  # open_clip's own spelling of "ViT-B/32"
        self.checkpoint, self.model_config = str(checkpoint), model_config
        self.min_score, self.device, self.precision = min_score, device, precision
        self.micro_batch = micro_batch
        self._check()
        self._model: Any = None

    def _check(self) -> None:
        if not -1.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in -1..1, got {self.min_score}")
        if not _DEVICE.fullmatch(self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ValueError(f"precision must be fp32, fp16 or bf16, got {self.precision!r}")
        if self.precision != "fp32" and self.device == "cpu":
            raise ValueError(f"precision {self.precision} needs cuda, not device cpu")
        if self.micro_batch <= 0:
            raise ValueError(f"micro_batch must be > 0, got {self.micro_batch}")
        if ":" in self.model:  # hf-hub:/local-dir: would ignore the checkpoint
            raise ValueError(f"model must be an open_clip architecture name, got {self.model!r}")
        if self.model_config is not None:
            check_model_config(self.model_config, self.model)

    def setup(self) -> None:
        """Load the model once per worker (never on the driver)."""
        if self._model is not None:
            return
        started = time.perf_counter()
        import torch

        device = resolve_device(self.device, ClipModelError)
        checkpoint = str(Path(self.checkpoint).resolve())
        self._model, self._preprocess, self._tokenizer = load_clip(
            self.model, checkpoint, self.model_config, device
        )
        self._device = torch.device(device)
        self._amp = None
        if self.precision != "fp32" and self._device.type == "cuda":
            self._amp = torch.float16 if self.precision == "fp16" else torch.bfloat16
        elif self.precision != "fp32":
            log.warning("clip_score_filter: no CUDA here, so fp32 instead of %s", self.precision)
        log.info(
            "clip_score_filter: %s from %s on %s (%s) in %.1f s",
            self.model,
            checkpoint,
            device,
            self.precision if self._amp else "fp32",
            time.perf_counter() - started,
        )

    def process(self, table: pa.Table) -> pa.Table:
        scores, errors = self.score_rows(table)
        captions = table.column("captions").to_pylist()
        previous = table.column("_item_rejects").to_pylist()
        kept_lists, rejects, low, details = [], [], [], []
        for row_captions, row_scores, earlier in zip(captions, scores, previous):
            if row_scores is None:  # not scored: not ok, no caption, or a bad image
                kept, dropped = row_captions, []
            else:
                kept, dropped = self._split(row_captions, row_scores)
            kept_lists.append(kept)
            rejects.append((earlier or []) + dropped or None)
            low.append(row_scores is not None and not kept)
            details.append(self._row_detail(row_scores) if low[-1] else None)
        table = set_columns(
            table,
            {
                "captions": pa.array(kept_lists, WORK_SCHEMA.field("captions").type),
                "_item_rejects": pa.array(rejects, pa.list_(ITEM_REJECT)),
            },
        )
        table = mark(
            table, pa.array(low), STATUS_REJECTED, "low_clip_score", pa.array(details, pa.string())
        )
        return _mark_errors(table, errors)

    def score_rows(
        self, table: pa.Table
    ) -> tuple[list[list[float] | None], dict[int, tuple[str, str]]]:
        """The CLIP score of each caption of each ok row (None for rows not scored), and
        ``{row: (reason, detail)}`` for rows whose image could not be used."""
        self.setup()  # a no-op after the first call; lets process run without setup
        images = table.column("image_bytes").to_pylist()
        captions = table.column("captions").to_pylist()
        status = table.column("status").to_pylist()
        todo = [i for i in range(table.num_rows) if status[i] == STATUS_OK and captions[i]]
        rows, image_features, errors = self._encode_images(images, todo)
        scores: list[list[float] | None] = [None] * table.num_rows
        if not rows:
            return scores, errors
        pairs = [(k, c.get("text") or "") for k, row in enumerate(rows) for c in captions[row]]
        text_features = self._encode_texts([text for _, text in pairs])
        paired = image_features[[k for k, _ in pairs]]
        flat = (text_features * paired).sum(dim=-1).tolist()
        for row in rows:
            scores[row], flat = flat[: len(captions[row])], flat[len(captions[row]) :]
        return scores, errors

    def _encode_images(
        self, images: list[bytes | None], todo: list[int]
    ) -> tuple[list[int], torch.Tensor | None, dict[int, tuple[str, str]]]:
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
                features.append(self._embed(self._model.encode_image, torch.stack(pixels)))
        return rows, (torch.cat(features) if features else None), errors

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        import torch

        chunks = _chunks(list(range(len(texts))), self.micro_batch)
        tokens = (self._tokenizer([texts[i] for i in chunk]) for chunk in chunks)
        return torch.cat([self._embed(self._model.encode_text, t) for t in tokens])

    def _pixels(self, data: bytes | None) -> torch.Tensor:
        if data is None:
            raise ImageError("missing_image_bytes", "no image_bytes (read_images keep_bytes off?)")
        # open_clip's transforms convert to RGB themselves; 16-bit grey must not clip
        image = eight_bit(decode_or_reject(data, _MAX_PIXELS))
        try:
            return self._preprocess(image)
        except (OSError, ValueError) as exc:  # e.g. a mode Pillow cannot convert to RGB
            raise ImageError("image_decode_error", f"{type(exc).__name__}: {exc}") from exc

    def _embed(self, encode: Callable, batch: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 embeddings on the CPU, computed on the model's device."""
        import torch

        amp = (
            torch.autocast(self._device.type, dtype=self._amp)
            if self._amp
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), amp:
            features = encode(batch.to(self._device)).float()
        # Normalised after the cast so fp16 runs divide in float32.
        return torch.nn.functional.normalize(features, dim=-1).cpu()

    def _split(self, captions: list[dict], scores: list[float]) -> tuple[list[dict], list[dict]]:
        kept, dropped = [], []
        for caption, score in zip(captions, scores):
            if score >= self.min_score:  # a NaN score is dropped, never kept
                kept.append(caption)
                continue
            detail = f"clip score {score:.3f} < min_score {self.min_score:g}"
            dropped.append(
                item_reject(
                    "caption",
                    caption.get("caption_id"),
                    "low_clip_score",
                    detail,
                    caption.get("text"),
                )
            )
        return kept, dropped

    def _row_detail(self, scores: list[float]) -> str:
        return f"every caption scored below min_score {self.min_score:g} (best {max(scores):.3f})"


def _mark_errors(table: pa.Table, errors: dict[int, tuple[str, str]]) -> pa.Table:
    """Mark the rows whose image could not be used as errors, one pass per reason."""
    n = table.num_rows
    for reason in sorted({r for r, _ in errors.values()}):
        mask = [i in errors and errors[i][0] == reason for i in range(n)]
        detail = [errors[i][1] if i in errors else None for i in range(n)]
        table = mark(table, pa.array(mask), STATUS_ERROR, reason, pa.array(detail, pa.string()))
    return table

"""Drop captions that an open_clip model says do not match their image (the CLIP score).

The CLIP score is the cosine similarity of the image's and the caption's embeddings.
LAION-2B kept pairs scoring at least 0.28 with OpenAI's ViT-B/32 (DataComp's ``laion``
baseline); DataComp's ViT-L/14 baselines keep a top fraction of the pool instead, so a
threshold only means something for the model it was chosen with.

The model itself is mmdata.models.clip (torch and open_clip are imported when it loads,
never when a recipe is checked); this stage scores rows and drops captions.
"""

from __future__ import annotations

import re
from typing import Literal

import pyarrow as pa

from mmdata.core.args import InputPath
from mmdata.core.batch import ITEM_REJECT, WORK_SCHEMA, item_reject, mark, set_columns
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_ERROR, STATUS_OK, STATUS_REJECTED
from mmdata.core.stage import Resources, Stage
from mmdata.models.clip import ClipScorer, check_model_config

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_CONFIG_KEYS = ("embed_dim", "vision_cfg", "text_cfg")


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
    requires = {"open_clip": "pip install 'mmdata[clip]'"}

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
        self._scorer: ClipScorer | None = None

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
        if self._scorer is None:
            self._scorer = ClipScorer(
                self.model, self.checkpoint, self.model_config, self.device, self.precision,
                self.micro_batch,
            )  # fmt: skip

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
        rows, image_features, errors = self._scorer.encode_images(images, todo)
        scores: list[list[float] | None] = [None] * table.num_rows
        if not rows:
            return scores, errors
        pairs = [(k, c.get("text") or "") for k, row in enumerate(rows) for c in captions[row]]
        text_features = self._scorer.encode_texts([text for _, text in pairs])
        paired = image_features[[k for k, _ in pairs]]
        flat = (text_features * paired).sum(dim=-1).tolist()
        for row in rows:
            scores[row], flat = flat[: len(captions[row])], flat[len(captions[row]) :]
        return scores, errors

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

"""clip_score_filter on a tiny random-init open_clip model saved by the test itself."""

import io
import json
import re

import pytest
import torch
from PIL import Image

from mmdata.core.args import check_args
from mmdata.models.clip import ClipModelError
from mmdata.stages.clip_score_filter import ClipScoreFilter
from tests.stages.helpers import caption, work_batch

open_clip = pytest.importorskip("open_clip")

NAME = "mmdata-tiny-clip"
TINY = {
    "embed_dim": 16,
    # head_width: vision heads are width // head_width (default 64, which would give 0)
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
DETAIL = re.compile(r"clip score (-?\d\.\d{3}) < min_score 1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(config path, checkpoint path) of a tiny CLIP whose random weights are saved once."""
    folder = tmp_path_factory.mktemp("clip")
    config = folder / f"{NAME}.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    checkpoint = folder / "tiny.pt"
    torch.save(open_clip.create_model(NAME).state_dict(), checkpoint)
    return str(config), str(checkpoint)


def make_stage(tiny, **kwargs) -> ClipScoreFilter:
    config, checkpoint = tiny
    kwargs = {"model": NAME, "model_config": config, "checkpoint": checkpoint, **kwargs}
    return ClipScoreFilter(**kwargs)


def encoded(color, size=(40, 30), fmt="JPEG", mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format=fmt)
    return out.getvalue()


IMAGES = [
    encoded((200, 10, 10)),
    encoded((10, 200, 10), (64, 64), "PNG"),
    encoded(128, (20, 50), "PNG", "L"),
    encoded((10, 10, 200, 128), (33, 33), "PNG", "RGBA"),
]
TEXTS = [
    ["a red square", "a photo of a dog", ""],
    ["green"],
    ["a grey image", "two cats on a sofa"],
    ["blue", "a blue tile on a wall"],
]


def batch(images=IMAGES, texts=TEXTS, **columns):
    captions = [[caption(f"{i}.{j}", t) for j, t in enumerate(row)] for i, row in enumerate(texts)]
    return work_batch(image_bytes=list(images), captions=captions, **columns)


def reference_scores(tiny) -> list[list[float]]:
    """Scores computed with open_clip directly, one pair at a time."""
    model, _, preprocess = open_clip.create_model_and_transforms(NAME, pretrained=tiny[1])
    tokenizer = open_clip.get_tokenizer(NAME)
    model.eval()
    scores = []
    with torch.inference_mode():
        for data, texts in zip(IMAGES, TEXTS):
            pixels = preprocess(Image.open(io.BytesIO(data))).unsqueeze(0)
            image = model.encode_image(pixels, normalize=True)
            text = model.encode_text(tokenizer(texts), normalize=True)
            scores.append((text @ image.T).squeeze(1).tolist())
    return scores


def test_scores_match_open_clip_and_are_deterministic(tiny):
    stage = make_stage(tiny, micro_batch=2)  # several micro-batches of images and texts
    scores, errors = stage.score_rows(batch())
    assert not errors
    expected = reference_scores(tiny)
    assert [len(s) for s in scores] == [len(t) for t in TEXTS]
    for got, want in zip(scores, expected):
        assert got == pytest.approx(want, abs=1e-5)
    assert all(-1 <= s <= 1 for row in scores for s in row)
    one_batch = make_stage(tiny).score_rows(batch())[0]
    assert sum(one_batch, []) == pytest.approx(sum(scores, []), abs=1e-5)
    assert stage.score_rows(batch())[0] == scores


def test_loads_through_open_clip_with_the_checkpoint_path(tiny, monkeypatch):
    calls = []
    real = open_clip.create_model_and_transforms

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", spy)
    stage = make_stage(tiny)
    assert stage._scorer is None  # nothing loads in __init__ (recipes are checked on the driver)
    stage.setup()
    stage.setup()
    stage.process(batch())  # no second load
    assert len(calls) == 1 and calls[0][0] == (NAME,)
    assert calls[0][1]["pretrained"] == tiny[1]
    saved = torch.load(tiny[1])
    loaded = stage._scorer.model.state_dict()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert not stage._scorer.model.training


@pytest.mark.parametrize("form", ["safetensors", "training"])
def test_loads_the_checkpoint_forms_users_download(tiny, tmp_path, form):
    """The HF hub's open_clip_model.safetensors, and open_clip training's own checkpoints
    (state_dict under a key, DDP's ``module.`` prefix, optimizer state beside it)."""
    weights = torch.load(tiny[1])
    path = tmp_path / f"model.{form}"
    if form == "safetensors":
        pytest.importorskip("safetensors.torch").save_file(weights, path)
    else:
        state = {f"module.{k}": v for k, v in weights.items()}
        torch.save({"epoch": 3, "name": "run", "state_dict": state, "optimizer": {}}, path)
    want = make_stage(tiny).score_rows(batch())[0]
    assert make_stage(tiny, checkpoint=str(path)).score_rows(batch())[0] == want


def test_min_score_minus_one_keeps_everything(tiny):
    source = batch()
    out = make_stage(tiny, min_score=-1).process(source)
    assert out.column("status").to_pylist() == ["ok"] * 4
    assert out.column("captions").to_pylist() == source.column("captions").to_pylist()
    assert out.column("_item_rejects").to_pylist() == [None] * 4


def test_min_score_one_drops_every_caption_and_row(tiny):
    source = batch()
    out = make_stage(tiny, min_score=1).process(source)
    scores = make_stage(tiny).score_rows(source)[0]
    assert out.column("status").to_pylist() == ["rejected"] * 4
    assert out.column("reason").to_pylist() == ["low_clip_score"] * 4
    assert out.column("captions").to_pylist() == [[]] * 4
    for row, (rejects, row_scores) in enumerate(
        zip(out.column("_item_rejects").to_pylist(), scores)
    ):
        assert [(r["kind"], r["item_id"], r["status"], r["reason"]) for r in rejects] == [
            ("caption", f"{row}.{j}", "rejected", "low_clip_score") for j in range(len(row_scores))
        ]
        assert [r["text"] for r in rejects] == TEXTS[row]
        shown = [float(DETAIL.fullmatch(r["detail"]).group(1)) for r in rejects]
        assert shown == pytest.approx(row_scores, abs=5e-4)
    detail = out.column("_detail").to_pylist()[0]
    assert re.fullmatch(r"every caption scored below min_score 1 \(best -?\d\.\d{3}\)", detail)


def test_drops_captions_below_the_threshold_one_by_one(tiny):
    source = batch()
    scores = make_stage(tiny).score_rows(source)[0]
    threshold = sorted(s for row in scores for s in row)[4]
    out = make_stage(tiny, min_score=threshold).process(source)
    captions = source.column("captions").to_pylist()
    for row, kept in enumerate(out.column("captions").to_pylist()):
        expected = [c for c, s in zip(captions[row], scores[row]) if s >= threshold]
        assert kept == expected  # kept captions unchanged, in order
        assert out.column("status")[row].as_py() == ("ok" if expected else "rejected")
    dropped = sum(len(r or []) for r in out.column("_item_rejects").to_pylist())
    assert dropped == 4


def test_bad_images_become_error_rows_and_other_rows_are_left_alone(tiny):
    images = [IMAGES[0], b"not an image", IMAGES[0][:60], None, IMAGES[1], b"junk"]
    texts = [["red"], ["x"], ["y"], ["z"], [], ["w"]]
    source = batch(images, texts, status=["ok"] * 5 + ["rejected"], reason=[None] * 5 + ["earlier"])
    out = make_stage(tiny, min_score=-1).process(source)
    assert out.column("status").to_pylist() == ["ok", "error", "error", "error", "ok", "rejected"]
    assert out.column("reason").to_pylist() == [
        None,
        "image_decode_error",
        "image_decode_error",
        "missing_image_bytes",
        None,
        "earlier",
    ]
    details = out.column("_detail").to_pylist()
    assert details[1].startswith("UnidentifiedImageError") and "image_bytes" in details[3]
    assert out.column("captions").to_pylist() == source.column("captions").to_pylist()


def test_load_errors_name_the_checkpoint_and_model(tiny, tmp_path):
    gone = tmp_path / "gone.pt"
    stage = make_stage(tiny, checkpoint=str(gone))  # constructing loads nothing
    with pytest.raises(ClipModelError, match=rf"{NAME}.*{re.escape(str(gone))}.*not a local file"):
        stage.process(batch())
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint" * 8)
    with pytest.raises(ClipModelError, match=rf"{NAME}.*{re.escape(str(corrupt))}"):
        make_stage(tiny, checkpoint=str(corrupt)).setup()
    wide = tmp_path / "mmdata-tiny-clip-wide.json"
    wide.write_text(json.dumps({**TINY, "embed_dim": 8}))
    with pytest.raises(ClipModelError, match="mmdata-tiny-clip-wide.*tiny.pt"):
        make_stage(tiny, model=wide.stem, model_config=str(wide)).setup()
    with pytest.raises(ClipModelError, match="no architecture 'ViT-Nope'"):
        ClipScoreFilter(model="ViT-Nope", checkpoint=tiny[1]).setup()


def test_arguments_are_checked_without_loading(tiny, tmp_path):
    for bad, message in [
        ({"min_score": 1.5}, "min_score"),
        ({"device": "tpu"}, "device"),
        ({"device": "cpu", "precision": "fp16"}, "needs cuda"),
        ({"micro_batch": 0}, "micro_batch"),
        ({"model": "hf-hub:org/repo", "model_config": None}, "architecture name"),
        ({"model": "other"}, "stem"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_stage(tiny, **bad)
    no_keys = tmp_path / "empty.json"
    no_keys.write_text("{}")
    with pytest.raises(ValueError, match="lacks embed_dim"):
        make_stage(tiny, model="empty", model_config=str(no_keys))
    with pytest.raises(ValueError, match="'checkpoint' names .*gone.pt, which does not exist"):
        check_args(ClipScoreFilter, {"checkpoint": "gone.pt"}, tmp_path)
    with pytest.raises(ValueError, match="missing required argument 'checkpoint'"):
        check_args(ClipScoreFilter, {}, tmp_path)
    args = check_args(ClipScoreFilter, {"checkpoint": tiny[1], "min_score": 0}, tmp_path)
    assert args["min_score"] == 0.0 and isinstance(args["min_score"], float)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_matches_cpu(tiny):
    cpu = make_stage(tiny, device="cpu").score_rows(batch())[0]
    stage = make_stage(tiny, device="cuda", precision="fp16")
    cuda = stage.score_rows(batch())[0]
    assert next(stage._scorer.model.parameters()).device.type == "cuda"
    for got, want in zip(cuda, cpu):
        assert got == pytest.approx(want, abs=2e-2)
    out = make_stage(tiny, device="auto", min_score=1).process(batch())
    assert out.column("reason").to_pylist() == ["low_clip_score"] * 4

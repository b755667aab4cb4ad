"""The vokenizer: its losses, weights in and out, and the proof that it learns on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import mmdata.recipes as shipped
import pytest
import torch
import yaml

from mmdata.commands.cli import main
from mmdata.demo import oracle as demo_oracle
from mmdata.models.vlp import ModelConfig, VLPModel
from mmdata.models.vokenizer import (
    TextEncoder,
    Vokenizer,
    VokenizerConfig,
    VokenizerError,
    load_backbone,
    load_bert,
    load_trainer_text,
    load_vokenizer,
    save_vokenizer,
    text_batch,
)
from mmdata.models.wordpiece import Tokenizer, train_wordpiece
from mmdata.train.config import ConfigError
from mmdata.train.vokenizer import info_nce_loss, load_training, paired_hinge_loss

CONFIG = Path(shipped.__file__).parent / "train_vokenizer_demo.yaml"
SMALL = ModelConfig(hidden=32, layers=2, heads=4, intermediate=64, dropout=0.0, max_text_tokens=20)


def test_paired_hinge_loss_is_the_originals_definition():
    """Each half of the batch is the other half's negatives, token by token, both ways,
    averaged over the real tokens (written out with loops here)."""
    g = torch.Generator().manual_seed(0)
    lang = torch.nn.functional.normalize(torch.randn(4, 5, 8, generator=g), dim=-1)
    visn = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1)
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])
    total, count = 0.0, 0
    for i in range(4):
        other = (i + 2) % 4  # its partner in the other half
        for t in range(5):
            if keep[i, t]:
                true = float(lang[i, t] @ visn[i])
                false = float(lang[i, t] @ visn[other])
                total += max(0.0, 0.5 - true + false)
                count += 1
    got = paired_hinge_loss(lang, visn, keep.bool(), 0.5)
    assert got.item() == pytest.approx(total / count, rel=1e-5)


def test_info_nce_treats_captions_of_one_image_as_one_target():
    lang = torch.nn.functional.normalize(torch.randn(3, 4, 8), dim=-1)
    visn = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    keep = torch.ones(3, 4, dtype=torch.bool)
    key = torch.tensor([0, 0, 1])  # two captions of image 0
    loss = info_nce_loss(lang, visn, keep, key, 0.1)
    logits = torch.einsum("bld,nd->bln", lang, visn[[0, 2]]) / 0.1
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 2), key.repeat_interleave(4))
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_bert_weights_load_exactly(tmp_path):
    """A Hugging Face BERT's state dict in the text encoder gives BERT's hidden states."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    torch.save(bert.state_dict(), tmp_path / "pytorch_model.bin")
    text = TextEncoder(SMALL, 50).eval()
    load_bert(text, tmp_path / "pytorch_model.bin")
    ids = torch.randint(5, 50, (2, 9))
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False
    ours = text(ids, keep)[-1]
    theirs = bert(input_ids=ids, attention_mask=keep.long()).last_hidden_state
    assert torch.allclose(ours[keep], theirs[keep], atol=1e-5)
    three_layers = TextEncoder(ModelConfig(**{**SMALL.__dict__, "layers": 3}), 50)
    with pytest.raises(VokenizerError, match="missing"):
        load_bert(three_layers, tmp_path / "pytorch_model.bin")


def test_a_trainer_checkpoint_initialises_the_text_side(tmp_path):
    vlp = VLPModel(SMALL, vocab_size=40, feature_dim=16).eval()
    torch.save({"model": vlp.state_dict(), "step": 3}, tmp_path / "step.pt")
    text = TextEncoder(SMALL, 40).eval()
    load_trainer_text(text, tmp_path / "step.pt")
    ids = torch.randint(5, 40, (2, 6))
    keep = torch.ones(2, 6, dtype=torch.bool)
    hidden, _ = vlp.encode(ids, keep)
    assert torch.allclose(text(ids, keep)[-1], hidden, atol=1e-6)
    with pytest.raises(VokenizerError, match="shape differs"):
        load_trainer_text(TextEncoder(SMALL, 41), tmp_path / "step.pt")


def test_backbone_weights_load_strictly_and_embed_pixels(tmp_path):
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet18.pth")
    config = VokenizerConfig(text=SMALL, image="backbone", backbone="resnet18")
    model = Vokenizer(config, 40)
    load_backbone(model.backbone, tmp_path / "resnet18.pth")
    assert torch.equal(model.backbone.conv1.weight, resnet.conv1.weight)
    keys = model.eval().encode_pixels(torch.randn(2, 3, 64, 64))
    assert keys.shape == (2, 64) and torch.allclose(keys.norm(dim=-1), torch.ones(2))
    torch.save({"conv1.weight": resnet.conv1.weight}, tmp_path / "partial.pth")
    with pytest.raises(VokenizerError, match="missing"):
        load_backbone(model.backbone, tmp_path / "partial.pth")


def test_saved_vokenizer_loads_with_the_same_id_and_refuses_changed_files(tmp_path):
    vocab = train_wordpiece(["a red circle", "a blue square"] * 20, 60, tmp_path / "tok")
    tokenizer = Tokenizer(vocab)
    model = Vokenizer(VokenizerConfig(text=SMALL, feature_dim=16), tokenizer.vocab_size).eval()
    ident = save_vokenizer(model, vocab, tmp_path / "v")
    loaded, tok, again = load_vokenizer(tmp_path / "v")
    assert again == ident and ident.startswith("vokenizer@")
    assert tok.vocab_size == tokenizer.vocab_size
    ids, keep, offsets = text_batch(tok, ["a red circle", "a blue square"], 20)
    assert torch.equal(loaded.encode_text(ids, keep), model.encode_text(ids, keep))
    assert offsets[0][1] == (2, 5)  # "red": characters of the text, no specials
    weights = tmp_path / "v" / "weights.pt"
    state = torch.load(weights, weights_only=True)
    state["lang_mlp.0.bias"] += 1
    torch.save(state, weights)
    with pytest.raises(VokenizerError, match="files changed since it was saved"):
        load_vokenizer(tmp_path / "v")


def test_config_mistakes_are_named(tmp_path):
    bad = yaml.safe_load(CONFIG.read_text())
    bad["batch_size"] = 7
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="even batch_size"):
        load_training(tmp_path / "odd.yaml")
    bad = yaml.safe_load(CONFIG.read_text())
    bad["vokenizer"]["imag"] = "regions_mean"
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="unknown keys \\['imag'\\]"):
        load_training(tmp_path / "typo.yaml")


@pytest.fixture(scope="module")
def oracle_catalog(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vokenizer")
    return Path(demo_oracle.build(folder / "catalog.duckdb", folder / "corpus", images=300))


def _train(catalog: Path, out: Path, capsys, *extra: str) -> dict:
    args = ["train-vokenizer", str(CONFIG), "--catalog", str(catalog), "--corpus"]
    assert main([*args, demo_oracle.CORPUS, "--out", str(out), "-q", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_vokenizer_learns_and_the_shuffled_control_does_not(oracle_catalog, tmp_path, capsys):
    """The proof (issue 21, item 7): on held-out images, colour and shape words retrieve
    their own image at R@5 >= 10x chance; trained on shuffled pairs, it stays at chance."""
    learned = _train(oracle_catalog, tmp_path / "v", capsys, "--epochs", "10")
    assert learned["eval_images"] >= 60
    assert learned["r5_words"] >= 10 * learned["r5_chance"], learned
    assert learned["epoch_losses"][-1] < 0.5 * learned["epoch_losses"][0]
    config = yaml.safe_load(CONFIG.read_text())
    (tmp_path / "shuffled.yaml").write_text(yaml.safe_dump({**config, "shuffle_pairs": True}))
    args = ["train-vokenizer", str(tmp_path / "shuffled.yaml"), "--catalog", str(oracle_catalog)]
    args += ["--corpus", demo_oracle.CORPUS, "--out", str(tmp_path / "s"), "-q", "--epochs", "10"]
    assert main(args) == 0
    control = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert control["r5_words"] <= 2 * control["r5_chance"], control
    _, _, ident = load_vokenizer(tmp_path / "v")
    assert ident == learned["vokenizer_id"]
    summary = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert summary["r5_words"] == learned["r5_words"]

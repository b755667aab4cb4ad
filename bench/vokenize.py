"""Voken search: mmdata's KeyIndex against the original vokenizer's indexers, on the CPU.

    python bench/vokenize.py                         # 10k, 50k and 1M keys (minutes)
    python bench/vokenize.py --sizes 10000,50000     # a minute or two on 2 cores

Two parts. **The encoder** (``--encoder``, on by default): tokens/s of the vokenizer's
language side (mmdata.models.vokenizer: the reference trainer's transformer, its last 4
layers concatenated, the MLP to 64-d unit vectors) against the original's language side
(a Hugging Face ``BertModel`` with ``output_hidden_states``, the same last-4 concat and
MLP), at BERT-base's shape (12 layers, 768 hidden) on batches of 16 sentences of 32
tokens, with the same weights (BERT's loaded into mmdata's encoder) and their outputs
compared. **The search**: for each key count the
script draws random unit keys (64-d float32, like the original's keys) and random unit
queries standing for token embeddings, and times, with 1 thread (the per-core figure)
and with every core this process may use:

- mmdata ``exact`` (torch matmul in chunks, candidates rescored in float64), ``faiss``
  (IndexFlatIP, the same rescoring) and ``faiss-hnsw`` (approximate; its recall@1
  against ``exact`` is printed; built once, with every core);
- the original's code path (github airsplay/vokenization, ``vokenization/indexing.py``),
  loaded at run time from a ``git archive`` of the local mirror into a temporary folder,
  never copied into this repository: ``FaissGPUIndexer`` (its default backend:
  IndexFlatL2 moved to the GPU) and ``TorchGPUIndexer`` (fp16 keys, a broadcast product
  summed over the last axis), each called through ``batch_top1`` on batches of
  ``--peer-batch`` queries, as ``Vokenizer.vokenize_ids`` calls it with a batch of 16
  sentences.

The original cannot run on a CPU as written: ``FaissGPUIndexer`` needs
``faiss.StandardGpuResources`` and ``faiss.index_cpu_to_gpu`` (absent from faiss-cpu)
and ``TorchGPUIndexer`` calls ``.cuda()``. The script tries it unchanged first and
prints why it fails, then runs the same methods with only those device calls made
no-ops (``index_cpu_to_gpu`` returns the CPU index, ``Tensor.cuda`` returns the
tensor), so everything else in them (the index type, fp16, the broadcast) is theirs.
The torch peer's broadcast holds ``batch x n x 64`` fp16 values, so its batch is cut to
keep that within 512 MiB, and it runs for at most ``--peer-seconds`` per setting (its
rate is measured on the queries it got through).

Prints a table, the ratios mmdata / original in queries per second, and one JSON
document with every figure (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mmdata.models.vokens import HnswParams, KeyIndex  # noqa: E402

MIRROR = Path("/work/.mirror/airsplay+vokenization/repo")
TORCH_PEER_BYTES = 512 << 20
ALL = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def set_threads(count: int) -> None:
    """torch's intra-op threads and faiss's OpenMP threads."""
    torch.set_num_threads(count)
    with contextlib.suppress(ImportError):
        import faiss

        faiss.omp_set_num_threads(count)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


# ---- the original, loaded from the mirror ------------------------------------------------


def load_original(source: Path, folder: Path) -> ModuleType:
    """``vokenization/indexing.py`` from a ``git archive`` of ``source`` (HEAD)."""
    archive = subprocess.run(
        ["git", "-C", str(source), "archive", "HEAD", "vokenization"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    path = folder / "vokenization" / "indexing.py"
    spec = importlib.util.spec_from_file_location("original_vokenization_indexing", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def device_calls_as_noops() -> Iterator[None]:
    """``faiss.StandardGpuResources``/``index_cpu_to_gpu`` and ``Tensor.cuda`` that stay
    on the CPU, for the duration; restored afterwards."""
    import faiss

    saved = {
        name: getattr(faiss, name, None) for name in ("StandardGpuResources", "index_cpu_to_gpu")
    }
    cuda = torch.Tensor.cuda
    faiss.StandardGpuResources = lambda: None
    faiss.index_cpu_to_gpu = lambda resources, device, index: index
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.cuda = cuda  # type: ignore[method-assign]
        for name, value in saved.items():
            if value is None:
                delattr(faiss, name)
            else:
                setattr(faiss, name, value)


def why_not_as_written(module: ModuleType, keys: np.ndarray) -> dict[str, str]:
    """Each original indexer built unchanged on a small key set: the error it raises."""
    reasons = {}
    for name in ("FaissGPUIndexer", "TorchGPUIndexer"):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                getattr(module, name)(keys[:100], gpus=(0,), fp16=True)
            reasons[name] = "ran"
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            reasons[name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return reasons


def run_original(
    module: ModuleType,
    name: str,
    keys: np.ndarray,
    queries: np.ndarray,
    batch: int,
    seconds: float,
) -> dict[str, Any]:
    """Build the original indexer (device calls as no-ops) and call ``batch_top1`` on
    batches of ``batch`` queries until all are done or ``seconds`` have passed."""
    with device_calls_as_noops(), contextlib.redirect_stdout(io.StringIO()):
        build_s, indexer = timed(lambda: getattr(module, name)(keys, gpus=(0,), fp16=True))
        indexer.batch_top1(torch.from_numpy(queries[:batch]))  # warm-up
        ids, done, started = [], 0, time.perf_counter()
        while done < len(queries) and time.perf_counter() - started < seconds:
            chunk = torch.from_numpy(queries[done : done + batch])  # a model's output tensor
            ids.append(indexer.batch_top1(chunk)[1].numpy())
            done += len(chunk)
        wall = time.perf_counter() - started
    return {"build_s": build_s, "queries": done, "seconds": wall, "ids": np.concatenate(ids)}


# ---- one key count -----------------------------------------------------------------------


def bench_size(n: int, args: argparse.Namespace, original: ModuleType | None) -> list[dict]:
    keys, queries = unit_rows(n, args.dim, seed=n), unit_rows(args.queries, args.dim, seed=1)
    rows: list[dict] = []
    set_threads(ALL)
    indexes: dict[str, KeyIndex] = {}
    build: dict[str, float] = {}
    hnsw = HnswParams(ef_search=args.ef_search)
    for backend in ("exact", "faiss", "faiss-hnsw"):  # build: key checks + faiss's index
        build[backend], indexes[backend] = timed(lambda b=backend: KeyIndex(keys, b, hnsw=hnsw))
    truth: np.ndarray | None = None
    for threads in sorted({1, ALL}):
        set_threads(threads)
        for backend, index in indexes.items():
            index.search(queries[:256], args.k)  # warm-up
            seconds, (_, ids) = timed(lambda i=index: i.search(queries, args.k))
            if backend == "exact" and truth is None:
                truth = ids[:, 0]
            assert truth is not None
            rows.append(
                {
                    "keys": n,
                    "threads": threads,
                    "method": f"mmdata {backend}",
                    "build_s": build[backend],
                    "queries": len(queries),
                    "seconds": seconds,
                    "queries_per_s": len(queries) / seconds,
                    "top1_agrees_with_exact": float((ids[:, 0] == truth).mean()),
                }
            )
        if original is None:
            continue
        torch_batch = max(1, min(args.peer_batch, TORCH_PEER_BYTES // (n * args.dim * 2)))
        for name, batch in (("FaissGPUIndexer", args.peer_batch), ("TorchGPUIndexer", torch_batch)):
            budget = args.peer_seconds if name == "TorchGPUIndexer" else float("inf")
            got = run_original(original, name, keys, queries, batch, budget)
            rows.append(
                {
                    "keys": n,
                    "threads": threads,
                    "method": f"original {name}",
                    "build_s": got["build_s"],
                    "queries": got["queries"],
                    "batch": batch,
                    "seconds": got["seconds"],
                    "queries_per_s": got["queries"] / got["seconds"],
                    "top1_agrees_with_exact": float((got["ids"] == truth[: got["queries"]]).mean()),
                }
            )
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """mmdata / original in queries per second, per key count and thread count."""
    rate = {(r["keys"], r["threads"], r["method"]): r["queries_per_s"] for r in rows}
    pairs = [
        ("mmdata exact", "original FaissGPUIndexer"),
        ("mmdata faiss", "original FaissGPUIndexer"),
        ("mmdata exact", "original TorchGPUIndexer"),
    ]
    out = []
    for keys, threads in sorted({(r["keys"], r["threads"]) for r in rows}):
        for ours, theirs in pairs:
            if (keys, threads, theirs) in rate:
                value = rate[(keys, threads, ours)] / rate[(keys, threads, theirs)]
                out.append(
                    {"keys": keys, "threads": threads, "mmdata": ours, "original": theirs,
                     "ratio": value}
                )  # fmt: skip
    return out


def print_table(rows: list[dict], table_ratios: list[dict]) -> None:
    head = (
        f"{'keys':>9} {'thr':>3}  {'method':<28} {'build s':>8} {'queries':>8} {'q/s':>10}"
        "  top-1 = exact"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['keys']:>9,} {r['threads']:>3}  {r['method']:<28} {r['build_s']:>8.2f} "
            f"{r['queries']:>8,} {r['queries_per_s']:>10,.0f}  {r['top1_agrees_with_exact']:.4f}"
        )
    print()
    for r in table_ratios:
        print(
            f"{r['keys']:>9,} keys, {r['threads']} thread(s): {r['mmdata']} / {r['original']} "
            f"= {r['ratio']:.2f}x"
        )


def bench_encoder(args: argparse.Namespace) -> list[dict]:
    """Tokens/s of mmdata's vokenizer language side and of the original's (HF BERT)."""
    import transformers

    from mmdata.models.vlp import ModelConfig
    from mmdata.models.vokenizer import Vokenizer, VokenizerConfig, load_bert

    layers, hidden = args.encoder_layers, args.encoder_hidden
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=hidden // 64, intermediate_size=4 * hidden,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    bert = transformers.BertModel(config, add_pooling_layer=False).eval()
    text = ModelConfig(hidden=hidden, layers=layers, heads=hidden // 64,
                       intermediate=4 * hidden, dropout=0.0, max_text_tokens=126)  # fmt: skip
    ours = Vokenizer(VokenizerConfig(text=text, lang_layers=4, feature_dim=16), 30522).eval()
    with tempfile.TemporaryDirectory() as folder:
        torch.save(bert.state_dict(), Path(folder) / "bert.bin")
        load_bert(ours.text, Path(folder) / "bert.bin")
    mlp = ours.lang_mlp  # the same head on both sides

    def original(ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        out = bert(input_ids=ids, attention_mask=keep.long(), output_hidden_states=True)
        hidden_states = torch.cat(out.hidden_states[-4:], dim=-1)
        return torch.nn.functional.normalize(mlp(hidden_states), dim=-1)

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (16, 32), generator=g)
    keep = torch.ones_like(ids, dtype=torch.bool)
    with torch.inference_mode():
        diff = float((ours.encode_text(ids, keep) - original(ids, keep)).abs().max())
    rows = []
    for threads in sorted({1, ALL}):
        set_threads(threads)
        for name, encode in (("mmdata", ours.encode_text), ("original (HF BERT)", original)):
            with torch.inference_mode():
                encode(ids, keep)  # warm up
                count = args.encoder_batches
                seconds, _ = timed(lambda f=encode, n=count: [f(ids, keep) for _ in range(n)])
            tokens = ids.numel() * args.encoder_batches
            rows.append({"part": "encoder", "method": name, "threads": threads,
                         "tokens": tokens, "tokens_per_s": tokens / seconds})  # fmt: skip
    set_threads(ALL)
    for row in rows:
        print(f"encoder {row['method']:<20} {row['threads']} thread(s): "
              f"{row['tokens_per_s']:,.0f} tokens/s")  # fmt: skip
    print(f"encoder outputs agree to {diff:.1e} (max abs difference of the unit vectors)\n")
    for threads in sorted({1, ALL}):
        pair = {r["method"]: r["tokens_per_s"] for r in rows if r["threads"] == threads}
        rows.append({"part": "encoder", "ratio": pair["mmdata"] / pair["original (HF BERT)"],
                     "threads": threads, "max_abs_difference": diff})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-encoder", action="store_true", help="skip the encoder part")
    parser.add_argument("--encoder-layers", type=int, default=12)
    parser.add_argument("--encoder-hidden", type=int, default=768)
    parser.add_argument("--encoder-batches", type=int, default=4, help="timed batches of 16")
    parser.add_argument("--sizes", default="10000,50000,1000000", help="key counts")
    parser.add_argument("--queries", type=int, default=20_000, help="token embeddings searched")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=1, help="mmdata's results per query")
    parser.add_argument("--ef-search", type=int, default=HnswParams.ef_search)
    parser.add_argument("--peer-batch", type=int, default=512, help="queries per batch_top1")
    parser.add_argument("--peer-seconds", type=float, default=20.0, help="torch peer's budget")
    parser.add_argument("--original", type=Path, default=MIRROR, help="vokenization git repo")
    parser.add_argument("--no-original", action="store_true", help="only mmdata's backends")
    parser.add_argument("--json", type=Path, help="also write the JSON document here")
    args = parser.parse_args()

    import faiss

    sizes = [int(s) for s in args.sizes.split(",")]
    document: dict[str, Any] = {
        "bench": "vokenize (encoder and search)",
        "machine": {"cores": ALL, "torch": torch.__version__, "faiss": faiss.__version__},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    if not args.no_encoder:
        document["encoder"] = bench_encoder(args)
    original = None
    with tempfile.TemporaryDirectory(prefix="vokenization-") as folder:
        if not args.no_original:
            try:
                original = load_original(args.original, Path(folder))
            except (OSError, subprocess.CalledProcessError, ImportError) as exc:
                document["original"] = {"loaded": False, "why": f"{type(exc).__name__}: {exc}"}
            else:
                as_written = why_not_as_written(original, unit_rows(100, args.dim, seed=0))
                document["original"] = {
                    "loaded": True,
                    "source": f"{args.original} HEAD:vokenization/indexing.py (git archive)",
                    "runs_on_cpu_as_written": as_written,
                    "run_here_with": "faiss.StandardGpuResources -> None, "
                    "faiss.index_cpu_to_gpu -> the CPU index, Tensor.cuda -> the tensor",
                }
                for name, outcome in as_written.items():
                    print(f"original {name} on this CPU as written: {outcome}")
                print("so it runs with its device calls as no-ops (the rest is its code)\n")
        rows = []
        for n in sizes:
            rows += bench_size(n, args, original)
            print(f"{n:,} keys done", file=sys.stderr, flush=True)
    document["results"] = rows
    document["ratios"] = ratios(rows)
    print_table(rows, document["ratios"])
    text = json.dumps(document, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()

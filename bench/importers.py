"""Streaming annotation importers (Visual Genome, CC3M) against a json.load baseline.

    python bench/importers.py [--vg-mb 1000] [--cc-mb 1000] [--workdir DIR]
    python bench/importers.py --vg-mb 50 --cc-mb 50          # quick run

Generates VG-format files (image_data, objects_v1_2, relationships_v1_2; with
``--vg-extra`` also attributes and region_descriptions) whose objects + relationships
total about ``--vg-mb`` MB, and a CC3M TSV of about ``--cc-mb`` MB, by replicating and
perturbing the real records in tests/data (new ids, shifted boxes, sampled names and
captions). Each importer (``partitions()`` + ``read()`` of every partition) and each
baseline (load the whole file, loop building row dicts) runs in its own subprocess,
which reports its peak RSS. Prints rows/s, MB/s, peak RSS and importer/baseline ratios.
Targets: peak RSS under 1500 MB, throughput at least the baseline's.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VG_SAMPLE = ROOT / "tests/data/visual_genome/v1.2_first5images"
CC_SAMPLES = sorted((ROOT / "tests/data/cc3m").glob("cc3m_*GCC-*first5.tsv"))
VG_MAIN = {"objects": "objects_v1_2.json", "relationships": "relationships_v1_2.json"}
VG_EXTRA = {"attributes": "attributes.json", "region_descriptions": "region_descriptions.json"}
RSS_TARGET_MB = 1500.0
MB = 1e6
SEED = 1234
BOX_SHIFT_PX = 20

# ---------------------------------------------------------------- data generation


class _Perturber:
    """Rewrites one template image's records: new ids, shifted boxes, sampled names."""

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng, self.names = rng, names
        self.next_id = 10_000_000
        self.image: dict[str, Any] = {}
        self.objects: dict[Any, tuple[int, str]] = {}

    def start(self, image_id: int, template: dict) -> dict:
        """Begin a new image; returns its image_data record."""
        shift = self.rng.randint(-BOX_SHIFT_PX, BOX_SHIFT_PX)
        self.image = {"id": image_id, "shift": shift, **template}
        self.objects = {}
        url = template["url"].rsplit("/", 1)[0] + f"/{image_id}.jpg"
        return {**template, "image_id": image_id, "url": url}

    def record(self, template: Any) -> Any:
        """A deep copy of one per-image record rewritten for the current image."""
        return self._walk(copy.deepcopy(template))

    def _walk(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        if not isinstance(value, dict):
            return value
        for key, item in value.items():
            value[key] = self._walk(item)
        return self._rewrite(value)

    def _rewrite(self, item: dict) -> dict:
        if "image_id" in item:
            item["image_id"] = self.image["id"]
        if "regions" in item and "id" in item:
            item["id"] = self.image["id"]
        for key in ("relationship_id", "region_id"):
            if key in item:
                item[key] = self._fresh()
        if "object_id" in item:
            self._object(item)
        self._shift(item)
        return item

    def _object(self, item: dict) -> None:
        """Same new id and name for one template object in every file of the image."""
        old = item["object_id"]
        if old not in self.objects:
            name = self.rng.choice(self.names)
            self.objects[old] = (self._fresh(), name)
        item["object_id"], name = self.objects[old]
        if "names" in item:
            item["names"] = [name]
        if "name" in item:
            item["name"] = name

    def _shift(self, item: dict) -> None:
        """Move a box by the image's shift, kept inside the image."""
        for axis, size, side in (("x", "w", "width"), ("y", "h", "height")):
            extent = item.get(size, item.get(side)) if axis in item else None
            if isinstance(extent, int) and isinstance(item[axis], int):
                limit = max(self.image[side] - extent, 0)
                item[axis] = min(max(item[axis] + self.image["shift"], 0), limit)

    def _fresh(self) -> int:
        self.next_id += 1
        return self.next_id


class _ArrayWriter:
    """Writes a top-level JSON array one record at a time (``[{...}, {...}]``)."""

    def __init__(self, path: Path) -> None:
        self.handle = open(path, "w", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.handle.write("[")
        self.size, self.first = 1, True

    def add(self, record: Any) -> None:
        text = ("" if self.first else ", ") + json.dumps(record)
        self.handle.write(text)
        self.size += len(text)
        self.first = False

    def close(self) -> None:
        self.handle.write("]")
        self.handle.close()


def _load_vg_sample(files: dict[str, str]) -> tuple[list[dict], dict[str, list]]:
    images = json.loads((VG_SAMPLE / "image_data.json").read_text())
    per_image = {}
    for kind, name in files.items():
        records = json.loads((VG_SAMPLE / name).read_text())
        by_id = {r.get("image_id", r.get("id")): r for r in records}
        per_image[kind] = [by_id[image["image_id"]] for image in images]
    return images, per_image


def _sample_names(per_image: dict[str, list]) -> list[str]:
    names: set[str] = set()
    for record in per_image["objects"]:
        for obj in record["objects"]:
            names.update(obj["names"])
    return sorted(names)


def generate_vg(folder: Path, target_mb: float, extra: bool) -> dict[str, str]:
    """Write VG files until objects + relationships reach ``target_mb``; their paths."""
    files = {**VG_MAIN, **(VG_EXTRA if extra else {})}
    images, per_image = _load_vg_sample(files)
    perturber = _Perturber(random.Random(SEED), _sample_names(per_image))
    writers = {k: _ArrayWriter(folder / name) for k, name in files.items()}
    writers["image_data"] = _ArrayWriter(folder / "image_data.json")
    image_id = 0
    while writers["objects"].size + writers["relationships"].size < target_mb * MB:
        template = image_id % len(images)
        image_id += 1
        writers["image_data"].add(perturber.start(image_id, images[template]))
        for kind in files:
            writers[kind].add(perturber.record(per_image[kind][template]))
    for writer in writers.values():
        writer.close()
    paths = {k: str(folder / name) for k, name in files.items()}
    return {"image_data": str(folder / "image_data.json"), **paths}


def _cc_sample() -> tuple[list[str], list[str]]:
    captions, urls = [], []
    for path in CC_SAMPLES:
        for line in path.read_text().splitlines():
            fields = line.split("\t")
            if len(fields) == 2:  # caption<TAB>url (the labelled subset has 5 columns)
                captions.append(fields[0])
                urls.append(fields[1])
    return captions, urls


def _cc_line(rng: random.Random, captions: list[str], urls: list[str], row: int) -> str:
    words = rng.choice(captions).split()
    words[rng.randrange(len(words))] = rng.choice(rng.choice(captions).split())
    url = rng.choice(urls)
    stem, _, name = url.rpartition("/")
    return f"{' '.join(words)}\t{stem}/{row}-{name}\n"


def generate_cc(path: Path, target_mb: float) -> str:
    """Write a CC3M train-style TSV (``caption<TAB>url``) of about ``target_mb`` MB."""
    rng, (captions, urls) = random.Random(SEED), _cc_sample()
    size, row = 0, 0
    with open(path, "w", buffering=1 << 20) as handle:
        while size < target_mb * MB:
            chunk = "".join(_cc_line(rng, captions, urls, row + i) for i in range(10_000))
            handle.write(chunk)
            size, row = size + len(chunk.encode()), row + 10_000
    return str(path)


# ---------------------------------------------------------------- measured jobs


def vg_importer(files: dict[str, str], workdir: str, rows_per_partition: int) -> int:
    from annotation.visual_genome import VisualGenomeSource

    cache = os.path.join(workdir, "vg-cache")
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(cache)
    source = VisualGenomeSource(**files, cache_dir=cache)
    return sum(source.read(p).num_rows for p in source.partitions(rows_per_partition))


def _vg_object(obj: dict) -> dict:
    names = obj["names"] if "names" in obj else [obj["name"]]
    return {
        "object_id": str(obj["object_id"]),
        "names": [str(n) for n in names],
        "box_xywh_px": [obj["x"], obj["y"], obj["w"], obj["h"]],
        "attributes": [str(a) for a in obj.get("attributes", [])],
        "synsets": [str(s) for s in obj.get("synsets", [])],
    }


def _vg_group(path: str | None, key: str) -> dict[Any, list]:
    by_image: dict[Any, list] = defaultdict(list)
    if path:
        with open(path, "rb") as handle:
            for record in json.load(handle):
                by_image[record.get("image_id", record.get("id"))].extend(record[key])
    return by_image


def _vg_baseline_row(image: dict, groups: dict[str, dict]) -> dict:
    image_id = image["image_id"]
    objects, index = [], {}
    for obj in groups["objects"][image_id]:
        index[obj["object_id"]] = len(objects)
        objects.append(_vg_object(obj))
    relations = []
    for rel in groups["relationships"][image_id]:
        ends = [rel["subject"], rel["object"]]
        for end in ends:
            if end["object_id"] not in index:
                index[end["object_id"]] = len(objects)
                objects.append(_vg_object(end))
        subject, obj = (index[e["object_id"]] for e in ends)
        relations.append({"relation_id": str(rel["relationship_id"]), "subject": subject,
                          "predicate": rel["predicate"], "object": obj})  # fmt: skip
    regions = [{"region_id": str(r["region_id"]), "text": r["phrase"]}
               for r in groups["region_descriptions"][image_id]]  # fmt: skip
    gold = {"objects": objects, "relations": relations, "regions": regions}
    return {"image_id": f"vg:{image_id}", "url": image["url"], "gold": gold}


def vg_baseline(files: dict[str, str], workdir: str, rows_per_partition: int) -> int:
    with open(files["image_data"], "rb") as handle:
        images = json.load(handle)
    groups = {k: _vg_group(files.get(k), key) for k, key in _VG_KEYS.items()}
    rows = [_vg_baseline_row(image, groups) for image in images]
    return len(rows)


_VG_KEYS = {
    "objects": "objects",
    "relationships": "relationships",
    "region_descriptions": "regions",
}


def cc_importer(files: dict[str, str], workdir: str, rows_per_partition: int) -> int:
    from annotation.conceptual import Cc3mSource

    source = Cc3mSource(tsv=files["tsv"])
    return sum(source.read(p).num_rows for p in source.partitions(rows_per_partition))


def cc_baseline(files: dict[str, str], workdir: str, rows_per_partition: int) -> int:
    with open(files["tsv"], encoding="utf-8", newline="") as handle:
        lines = handle.read().split("\n")
    rows = []
    for row, fields in enumerate(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)):
        if len(fields) == 2:
            caption = {"caption_id": f"cc3m:{row}#0", "text": fields[0], "scene_graph": None}
            rows.append({"image_id": f"cc3m:{row}", "url": fields[1], "captions": [caption]})
    return len(rows)


JOBS: dict[str, Callable[[dict[str, str], str, int], int]] = {
    "vg-importer": vg_importer,
    "vg-baseline": vg_baseline,
    "cc-importer": cc_importer,
    "cc-baseline": cc_baseline,
}


def child(job: str, files: dict[str, str], workdir: str, rows_per_partition: int) -> None:
    """Run one job in this (fresh) process and print its figures as one JSON line."""
    start = time.perf_counter()
    rows = JOBS[job](files, workdir, rows_per_partition)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mb": peak_kib * 1024 / MB}))


# ---------------------------------------------------------------- driver


def measure(job: str, files: dict[str, str], workdir: str, rows_per_partition: int) -> dict:
    """Run ``job`` in a subprocess; its figures, or an ``error`` (e.g. killed for memory)."""
    spec = json.dumps([job, files, workdir, rows_per_partition])
    command = [sys.executable, str(Path(__file__).resolve()), "--child", spec]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    input_mb = sum(os.path.getsize(p) for p in files.values()) / MB
    figures: dict[str, Any] = {"name": job, "input_mb": input_mb}
    if done.returncode != 0:
        reason = "killed (out of memory?)" if done.returncode < 0 else "failed"
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        return {**figures, "error": f"{reason}, rc {done.returncode}: {tail[0]}"}
    figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return {**figures, "rows_s": figures["rows"] / figures["seconds"],
            "mb_s": input_mb / figures["seconds"]}  # fmt: skip


def _line(f: dict) -> str:
    if "error" in f:
        return f"| {f['name']} | {f['input_mb']:.0f} | - | - | - | - | - | {f['error']} |"
    return (
        f"| {f['name']} | {f['input_mb']:.0f} | {f['rows']} | {f['seconds']:.1f} "
        f"| {f['rows_s']:.0f} | {f['mb_s']:.1f} | {f['rss_mb']:.0f} |  |"
    )


def _verdict(importer: dict, baseline: dict) -> str:
    if "error" in importer:
        return f"{importer['name']}: no figures ({importer['error']})"
    rss_ok = importer["rss_mb"] < RSS_TARGET_MB
    text = f"{importer['name']}: peak RSS {importer['rss_mb']:.0f} MB "
    text += f"(target < {RSS_TARGET_MB:.0f}: {'met' if rss_ok else 'MISSED'})"
    if "error" in baseline:
        return text + f"; baseline has no figures ({baseline['error']})"
    speed = importer["mb_s"] / baseline["mb_s"]
    memory = importer["rss_mb"] / baseline["rss_mb"]
    text += f"; throughput importer/baseline {speed:.2f} "
    text += f"(target >= 1: {'met' if speed >= 1 else 'MISSED'})"
    return text + f"; RSS importer/baseline {memory:.2f}"


def report(results: list[dict]) -> None:
    """Print the table and, per importer, the ratios to its baseline and the targets."""
    print("| run | input MB | rows | seconds | rows/s | MB/s | peak RSS MB | note |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for figures in results:
        print(_line(figures))
    by_name = {f["name"]: f for f in results}
    for kind in ("vg", "cc"):
        if f"{kind}-importer" in by_name:
            print(_verdict(by_name[f"{kind}-importer"], by_name[f"{kind}-baseline"]))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vg-mb", type=float, default=1000.0)
    parser.add_argument("--cc-mb", type=float, default=1000.0)
    parser.add_argument("--vg-extra", action="store_true", help="also attributes, regions")
    parser.add_argument("--rows-per-partition", type=int, default=1000)
    parser.add_argument("--workdir", help="where the data goes (default: a temp folder)")
    parser.add_argument("--only", choices=("vg", "cc"), help="run one format only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args()


def _datasets(args: argparse.Namespace, folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    for kind in ("vg", "cc"):
        if args.only in (None, kind):
            start = time.perf_counter()
            if kind == "vg":
                files = generate_vg(folder, args.vg_mb, args.vg_extra)
            else:
                files = {"tsv": generate_cc(folder / "cc3m_train.tsv", args.cc_mb)}
            print(f"generated {kind} in {time.perf_counter() - start:.0f} s", flush=True)
            yield kind, files


def run(args: argparse.Namespace, folder: Path) -> None:
    results = []
    for kind, files in _datasets(args, folder):
        for job in (f"{kind}-importer", f"{kind}-baseline"):
            results.append(measure(job, files, str(folder), args.rows_per_partition))
            print(_line(results[-1]), flush=True)
        for path in files.values():
            os.remove(path)  # free the disk before the next format
        shutil.rmtree(folder / "vg-cache", ignore_errors=True)
    print()
    report(results)


def main() -> None:
    args = _arguments()
    if args.child:
        sys.path.insert(0, str(ROOT))
        child(*json.loads(args.child))
        return
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
        run(args, Path(args.workdir))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()

"""What a report shows, read from the catalog with SQL: the funnel, distributions, dedup
clusters, runs and recipe, and a reproducible random sample of rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mmdata.catalog.store import Catalog, CatalogError
from mmdata.report.summary import step_stats

#: Reject reasons of the dedup stages, and how their details name the copy that was kept.
DEDUP_REASONS = ("duplicate_image", "near_duplicate", "duplicate_url")
_SEEN = re.compile(r"^(?P<key>\w+) (?P<value>\S+) seen earlier")
_NEAR = re.compile(r"^phash (?P<value>\S+) is (?P<distance>\d+) bits from (?P<kept>[0-9a-f]+)")
TOP = 25  # bars per "most common" chart


@dataclass
class Sample:
    """One image row with what the report draws: its picture, captions with scene graphs,
    detector boxes and gold annotations."""

    image_id: str
    source: str | None
    split: str | None
    url: str | None
    path: str | None
    width: int | None
    height: int | None
    image_bytes: bytes | None
    captions: list[dict]
    regions: dict | None  # boxes, tags, attribute names, confidences, the size they refer to
    gold: dict | None


@dataclass
class Cluster:
    """Rows dropped as copies of one kept row (the kept one may be absent: it can have
    been rejected later for another reason)."""

    reason: str
    key: str  # the sha256, url or phash they share
    kept: Sample | None
    dropped: list[dict]  # image_id, url, detail


@dataclass
class CorpusFacts:
    corpus: str
    recipe_text: str
    output: str
    created_at: Any
    runs: list[dict]
    totals: dict[str, Any]
    funnel: list[dict]  # step_index, stage, rows_in, rows_out, seconds, drops {unit/reason: n}
    counts: dict[str, list[tuple[Any, int]]] = field(default_factory=dict)
    clusters: list[Cluster] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    languages: list[tuple[str, int]] = field(default_factory=list)
    languages_sampled: int = 0


def _dicts(catalog: Catalog, sql: str, params: list[Any]) -> list[dict]:
    columns, rows = catalog.query(sql, params)
    return [dict(zip(columns, row)) for row in rows]


def _pairs(catalog: Catalog, sql: str, params: list[Any]) -> list[tuple[Any, int]]:
    return [(key, int(n)) for key, n in catalog.query(sql, params)[1]]


_SAMPLE_COLUMNS = """
    image_id, source, split, url, path, width_px, height_px, image_bytes, captions, gold,
    CASE WHEN regions IS NULL THEN NULL ELSE {
        'extractor': regions.extractor_id, 'width': regions.image_width_px,
        'height': regions.image_height_px, 'boxes': regions.boxes_xyxy_px,
        'tags': regions.tags, 'conf': regions.object_conf,
        'attributes': regions.attribute_names, 'given': regions.boxes_given} END AS regions
"""


def samples(
    catalog: Catalog, corpus: str, where: str, params: list[Any], source: str = "images"
) -> list[Sample]:
    """Rows of ``corpus`` matching ``where`` (an SQL condition with ``?`` placeholders), from
    ``source`` (the images view, or ``Catalog.images_holding``'s shards)."""
    rows = _dicts(
        catalog,
        f"SELECT {_SAMPLE_COLUMNS} FROM {source} WHERE corpus = ? AND {where}",
        [corpus, *params],
    )
    return [
        Sample(
            image_id=r["image_id"],
            source=r["source"],
            split=r["split"],
            url=r["url"],
            path=r["path"],
            width=r["width_px"],
            height=r["height_px"],
            image_bytes=r["image_bytes"],
            captions=r["captions"] or [],
            regions=r["regions"],
            gold=r["gold"],
        )
        for r in rows
    ]


def gather(catalog: Catalog, corpus: str, sample_count: int = 24, seed: int = 0) -> CorpusFacts:
    """Everything the report of ``corpus`` shows.

    Raises:
        CatalogError: the catalog has no corpus of that name (the message lists those it has).
    """
    found = _dicts(
        catalog, "SELECT recipe_text, output, created_at FROM corpora WHERE name = ?", [corpus]
    )
    if not found:
        names = [r[0] for r in catalog.query("SELECT name FROM corpora ORDER BY name")[1]]
        raise CatalogError(f"{catalog.path}: no corpus {corpus!r}; it has {names}")
    p = [corpus]
    facts = CorpusFacts(
        corpus=corpus,
        recipe_text=found[0]["recipe_text"],
        output=found[0]["output"],
        created_at=found[0]["created_at"],
        runs=_dicts(
            catalog,
            "SELECT run_id, executor, status, started_at, finished_at, shards_written, error "
            "FROM runs WHERE corpus = ? ORDER BY run_id",
            p,
        ),
        totals=_totals(catalog, corpus),
        funnel=_funnel(catalog, corpus),
    )
    facts.counts = _counts(catalog, corpus)
    facts.clusters = _clusters(catalog, corpus)
    facts.samples = _random_samples(catalog, corpus, sample_count, seed)
    texts = [
        r[0]
        for r in catalog.query(
            "SELECT text FROM captions WHERE corpus = ? AND text IS NOT NULL "
            "ORDER BY hash(caption_id || ?) LIMIT 500",
            [corpus, str(seed)],
        )[1]
    ]
    facts.languages, facts.languages_sampled = _languages(texts), len(texts)
    return facts


def _random_samples(catalog: Catalog, corpus: str, count: int, seed: int) -> list[Sample]:
    """``count`` rows in an order set by ``seed``. The ids are drawn first, reading one
    column, so the wide columns (image bytes, features) are read only for the rows drawn."""
    ids = [
        r[0]
        for r in catalog.query(
            "SELECT image_id FROM images WHERE corpus = ? ORDER BY hash(image_id || ?) LIMIT ?",
            [corpus, str(seed), count],
        )[1]
    ]
    if not ids:
        return []
    where = f"image_id IN ({', '.join('?' for _ in ids)})"
    drawn = samples(catalog, corpus, where, ids, catalog.images_holding(ids, corpus))
    order = {image_id: i for i, image_id in enumerate(ids)}
    return sorted(drawn, key=lambda sample: order[sample.image_id])


def _totals(catalog: Catalog, corpus: str) -> dict[str, Any]:
    _, [(images, captions, unknown)] = catalog.query(  # the statistics: no shard is opened
        "SELECT images, captions, shards_without_stats FROM corpus_stats WHERE corpus = ?",
        [corpus],
    )
    if unknown:  # shards whose files were unreadable when the statistics were backfilled
        _, [(images, captions)] = catalog.query(
            "SELECT count(*), coalesce(sum(len(captions)), 0) FROM images WHERE corpus = ?",
            [corpus],
        )
    _, [(rejected,)] = catalog.query(
        "SELECT count(*) FROM rejects WHERE corpus = ? AND item_kind IS NULL", [corpus]
    )
    _, [(shards, size)] = catalog.query(
        "SELECT count(*), coalesce(sum(bytes), 0) FROM shards WHERE corpus = ? AND kind = 'data'",
        [corpus],
    )
    return {
        "images": images,
        "captions": int(captions),
        "rejected images": rejected,
        "data shards": shards,
        "data MB": round(size / 1e6, 2),
    }


def _funnel(catalog: Catalog, corpus: str) -> list[dict]:
    """The steps of ``mmdata.report.summary.step_stats``, drops as ``{label: rows}``,
    most first."""
    steps = step_stats(catalog, corpus)
    for step in steps:
        step["drops"] = {
            (d["reason"] if d["unit"] == "image" else f"{d['reason']} ({d['unit']}s)"): int(
                d["rows"]
            )
            for d in sorted(step["drops"], key=lambda d: -d["rows"])
        }
    return steps


def _counts(catalog: Catalog, corpus: str) -> dict[str, list[tuple[Any, int]]]:
    """Each distribution as (value, count) pairs, aggregated by DuckDB (never row by row)."""
    p = [corpus]
    queries = {
        "caption words": "SELECT len(string_split(trim(text), ' ')) AS v, count(*) "
        "FROM captions WHERE corpus = ? AND text IS NOT NULL GROUP BY v ORDER BY v",
        "captions per image": "SELECT len(captions) AS v, count(*) FROM images "
        "WHERE corpus = ? GROUP BY v ORDER BY v",
        "image width (px, bins of 32)": "SELECT (width_px // 32) * 32 AS v, count(*) "
        "FROM images WHERE corpus = ? AND width_px IS NOT NULL GROUP BY v ORDER BY v",
        "image height (px, bins of 32)": "SELECT (height_px // 32) * 32 AS v, count(*) "
        "FROM images WHERE corpus = ? AND height_px IS NOT NULL GROUP BY v ORDER BY v",
        "aspect ratio (width / height)": "SELECT round(width_px / height_px, 1) AS v, "
        "count(*) FROM images WHERE corpus = ? AND height_px > 0 GROUP BY v ORDER BY v",
        "regions per image": "SELECT num_boxes AS v, count(*) FROM regions "
        "WHERE corpus = ? GROUP BY v ORDER BY v",
        "detector classes": "SELECT cls_name AS v, count(*) AS n FROM region_boxes "
        f"WHERE corpus = ? AND cls_name IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {TOP}",
        "detector attributes": "SELECT attr_name AS v, count(*) AS n FROM region_boxes "
        "WHERE corpus = ? AND attr_name IS NOT NULL AND attr_name <> '' "
        f"GROUP BY v ORDER BY n DESC, v LIMIT {TOP}",
        "scene-graph objects": "SELECT coalesce(lemma, head) AS v, count(*) AS n "
        f"FROM scene_graph_objects WHERE corpus = ? GROUP BY v ORDER BY n DESC, v LIMIT {TOP}",
        "scene-graph attributes": "SELECT coalesce(lemma, attribute) AS v, count(*) AS n "
        "FROM scene_graph_attributes WHERE corpus = ? GROUP BY v ORDER BY n DESC, v "
        f"LIMIT {TOP}",
        "scene-graph predicates": "SELECT coalesce(predicate_lemma, predicate) AS v, "
        "count(*) AS n FROM scene_graph_relations WHERE corpus = ? GROUP BY v "
        f"ORDER BY n DESC, v LIMIT {TOP}",
        "gold object names": "SELECT name AS v, count(*) AS n FROM gold_objects "
        f"WHERE corpus = ? AND name IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {TOP}",
    }
    return {title: _pairs(catalog, sql, p) for title, sql in queries.items()}


def _clusters(catalog: Catalog, corpus: str, limit: int = 12) -> list[Cluster]:
    """Dedup drops grouped by the kept row they copy, largest groups first."""
    placeholders = ", ".join("?" for _ in DEDUP_REASONS)
    dropped = _dicts(
        catalog,
        f"SELECT reason, image_id, url, detail FROM rejects WHERE corpus = ? "
        f"AND item_kind IS NULL AND reason IN ({placeholders}) ORDER BY image_id",
        [corpus, *DEDUP_REASONS],
    )
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in dropped:
        detail = row["detail"] or ""
        near, seen = _NEAR.match(detail), _SEEN.match(detail)
        if near:
            column, key = "phash", near["kept"]
            row["distance"] = int(near["distance"])
        elif seen:
            column, key = seen["key"], seen["value"]
        else:
            column, key = "", detail
        groups.setdefault((row["reason"], column, key), []).append(row)
    largest = sorted(groups.items(), key=lambda item: -len(item[1]))[:limit]
    clusters = []
    for (reason, column, key), rows in largest:
        kept = None
        if column in ("sha256", "url", "phash"):
            match = samples(catalog, corpus, f"{column} = ? LIMIT 1", [key])
            kept = match[0] if match else None
        clusters.append(Cluster(reason, key, kept, rows))
    return clusters


def _languages(texts: list[str]) -> list[tuple[str, int]]:
    """Languages of ``texts`` by lingua (low-accuracy mode: preloads in under a second)."""
    if not texts:
        return []
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()
    counts: dict[str, int] = {}
    for language in detector.detect_languages_in_parallel_of(texts):
        code = language.iso_code_639_1.name.lower() if language else "unknown"
        counts[code] = counts.get(code, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

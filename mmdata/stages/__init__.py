"""Built-in stages, one registered stage per module. Importing this package registers them."""

from mmdata.stages import (
    caption_filter,
    clip_score_filter,
    download,
    exact_dedup,
    image_size_filter,
    language_filter,
    near_dedup,
    read_images,
    regions,
    scene_graph,
    text_fix,
    url_dedup,
    voken_keys,
    vokenize,
)

__all__ = [
    "caption_filter",
    "clip_score_filter",
    "download",
    "exact_dedup",
    "image_size_filter",
    "language_filter",
    "near_dedup",
    "read_images",
    "regions",
    "scene_graph",
    "text_fix",
    "url_dedup",
    "voken_keys",
    "vokenize",
]

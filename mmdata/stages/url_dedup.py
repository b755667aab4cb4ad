"""Drop rows whose URL was already seen in the corpus (run before download: saves the fetch)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from mmdata.core.registry import STAGES
from mmdata.stages.dedup_index import DedupFilter, hash64


def normalise_url(url: str) -> str:
    """The URL with scheme and host lower-cased and the fragment dropped.

    Path and query stay as they are: servers may treat them case-sensitively.
    """
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


@STAGES.register("url_dedup")
class UrlDedup(DedupFilter):
    """Keep the first row per URL across the whole run (and earlier runs of the corpus)."""

    reads = ("url",)
    key_column = "url"
    reason = "duplicate_url"

    def __init__(self, *, normalise: bool = True) -> None:
        """Args:
        normalise: compare URLs after lower-casing scheme and host and dropping the
            fragment (``#...``), which never reaches the server.
        """
        super().__init__()
        self.normalise = normalise

    def key(self, value: object) -> int | None:
        if not isinstance(value, str) or not value:
            return None
        return hash64(normalise_url(value) if self.normalise else value)

    def describe(self, value: object) -> str:
        return f"url {value} seen earlier in the corpus"

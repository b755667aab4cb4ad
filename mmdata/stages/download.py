"""Download each row's URL, check and resize the image, fill the image columns.

A URL that gives no usable image is a rejected row with the contract's reason
(``http_404``, ``timeout``, ``blocked_address``, ...) and a detail naming what happened;
it never stops the run, whatever ``on_error`` says, because dead links are data on the
web. A row's work is: scheme check, robots.txt, fetch (guarded, retried, capped),
X-Robots-Tag opt-out, image checks, img2dataset's resize/encode, sha256.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pyarrow as pa

from mmdata.core.batch import WORK_SCHEMA, mark, set_columns
from mmdata.core.imagefile import MAX_PIXELS, ImageError
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_REJECTED
from mmdata.core.stage import Resources, Stage
from mmdata.download.dns import DEFAULT_TTL_S
from mmdata.download.fetch import DownloadError, Fetcher, FetchOptions
from mmdata.download.guard import NetworkPolicy
from mmdata.download.http import BlockedScheme, check_scheme
from mmdata.download.images import ImageEncoder, StoredImage
from mmdata.download.robots import RobotsCache

#: img2dataset's default: the directives that mean "not for AI training / indexing".
DEFAULT_OPT_OUT = ("noai", "noimageai", "noindex", "noimageindex")
IMAGE_COLUMNS = ("image_bytes", "width_px", "height_px", "format", "sha256")


@STAGES.register("download")
class Download(Stage):
    """Fetch images for url+caption rows (cc3m, cc12m, sbu, url_list, laion-style)."""

    reads = ("url",)
    writes = IMAGE_COLUMNS
    # I/O bound: one CPU per task, ``threads`` requests in flight inside it.
    default_resources = Resources(num_cpus=1.0, batch_size=None)

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        max_bytes: int = 20 * 1024 * 1024,
        resize_mode: Literal[
            "no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"
        ] = "no",
        image_size: int = 512,
        encode_format: Literal["jpg", "png", "webp"] = "jpg",
        allow_private_networks: bool = False,
        respect_robots_txt: bool = True,
        opt_out_directives: list[str] | None = None,
        threads: int = 32,
        per_host_connections: int = 8,
        allowed_networks: list[str] | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        total_timeout_s: float = 60.0,
        max_pixels: int = MAX_PIXELS,
        encode_quality: int | None = None,
        resize_only_if_bigger: bool = False,
        skip_reencode: bool = True,
        keep_bytes: bool = True,
        user_agent_token: str = "mmdata",
        dns_ttl_s: float = DEFAULT_TTL_S,
        reduced_decode: bool = True,
    ) -> None:
        """Args:
        timeout_s: socket timeout per connect or read, seconds (img2dataset's ``timeout``).
        retries: extra attempts after a 429, 5xx or timeout, with exponential backoff.
        max_bytes: largest body accepted (Content-Length checked before reading).
        resize_mode: img2dataset's resize mode; ``no`` keeps the size.
        image_size: target size in pixels for the resize modes.
        encode_format: img2dataset's output encoding (jpg, png, webp).
        allow_private_networks: lift the network guard (local servers, tests, intranets).
        respect_robots_txt: fetch each site's robots.txt and honour it for image paths.
        opt_out_directives: X-Robots-Tag directives that refuse the image (None: noai,
            noimageai, noindex, noimageindex; [] turns the check off).
        threads: requests in flight per worker.
        per_host_connections: requests in flight per host name, per worker.
        allowed_networks: CIDRs allowed despite the guard, e.g. ``127.0.0.1/32``.
        backoff_s: first retry wait; doubles per attempt, jittered, Retry-After honoured.
        max_backoff_s: longest wait between attempts.
        total_timeout_s: longest time reading one body (a slow drip defeats timeout_s).
        max_pixels: refuse images with more pixels (checked from the header).
        encode_quality: img2dataset's encode quality: JPEG/WebP quality (default 95) or PNG
            compression 0-9 (default 9).
        resize_only_if_bigger: only downscale.
        skip_reencode: keep the original bytes when no resize is needed and the format
            already is ``encode_format``.
        keep_bytes: store the encoded image in ``image_bytes``.
        user_agent_token: product token in the User-Agent, matched by robots.txt and
            X-Robots-Tag rules.
        dns_ttl_s: seconds a host's resolved addresses are reused by a worker (one lookup
            per host, not per URL; failed lookups are kept at most 30 s); 0 resolves for
            every connection. The guard checks every address each time either way.
        reduced_decode: decode a JPEG at 1/2, 1/4 or 1/8 size when the resize still has
            enough pixels from that (same output size and encoding as img2dataset, pixels
            within a few grey levels), and do its resize in the fetch threads; False
            decodes every image at full size as img2dataset does.
        """
        _check_positive(
            timeout_s=timeout_s,
            max_bytes=max_bytes,
            image_size=image_size,
            threads=threads,
            per_host_connections=per_host_connections,
            total_timeout_s=total_timeout_s,
            max_pixels=max_pixels,
        )
        if retries < 0 or backoff_s < 0 or max_backoff_s < 0 or dns_ttl_s < 0:
            raise ValueError("retries, backoff_s, max_backoff_s and dns_ttl_s must be >= 0")
        if not user_agent_token.strip() or any(c in user_agent_token for c in " ;()/"):
            raise ValueError(f"user_agent_token must be one word, got {user_agent_token!r}")
        directives = DEFAULT_OPT_OUT if opt_out_directives is None else opt_out_directives
        self.policy = NetworkPolicy.build(allow_private_networks, allowed_networks or ())
        self.options = FetchOptions(
            timeout_s=timeout_s,
            total_timeout_s=total_timeout_s,
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            max_bytes=max_bytes,
            user_agent_token=user_agent_token.strip().lower(),
            opt_out_directives=frozenset(d.strip().lower() for d in directives),
            per_host_connections=per_host_connections,
            dns_ttl_s=dns_ttl_s,
        )
        # Built here so a bad resize/encode combination fails at recipe validation.
        self.encoder = ImageEncoder(
            image_size=image_size,
            resize_mode=resize_mode,
            encode_format=encode_format,
            encode_quality=(9 if encode_format == "png" else 95)
            if encode_quality is None
            else encode_quality,
            resize_only_if_bigger=resize_only_if_bigger,
            skip_reencode=skip_reencode,
            max_pixels=max_pixels,
            reduced_decode=reduced_decode,
        )
        self.threads, self.respect_robots_txt, self.keep_bytes = (
            threads,
            respect_robots_txt,
            keep_bytes,
        )
        self._fetcher: Fetcher | None = None
        self._robots: RobotsCache | None = None

    def setup(self) -> None:
        self._fetcher = Fetcher(self.options, self.policy)
        if self.respect_robots_txt:
            self._robots = RobotsCache(self._fetcher, self.options.user_agent_token)

    def fetch_body(self, url: str) -> bytes:
        """Scheme check, robots.txt, guarded fetch; raises DownloadError. Thread-safe."""
        if self._fetcher is None:
            self.setup()
        assert self._fetcher is not None
        try:
            check_scheme(url)
        except BlockedScheme as exc:
            raise DownloadError("blocked_scheme", str(exc)) from exc
        if self._robots is not None:
            problem = self._robots.problem(url)
            if problem:
                raise DownloadError("robots_disallow", problem)
        return self._fetcher.get(url)

    def _body(self, url: str) -> StoredImage | tuple[bytes, str] | tuple[str, str]:
        """In a fetch thread: the stored image, or the body and its checked format
        (for img2dataset's Resizer), or (reason, detail).

        The image work that can run in threads runs here (a JPEG's reduced decode,
        resize, encode and sha256; other bodies' Pillow check): OpenCV and Pillow
        release the GIL, so it overlaps with the other threads' fetches.
        """
        try:
            body = self.fetch_body(url)
            prepared = self.encoder.prepare(body)
        except (DownloadError, ImageError) as exc:
            return exc.reason, f"{url}: {exc}"
        return prepared if isinstance(prepared, StoredImage) else (body, prepared)

    def _image(self, url: str, fetched: StoredImage | tuple) -> StoredImage | tuple[str, str]:
        if isinstance(fetched, StoredImage) or isinstance(fetched[0], str):
            return fetched
        try:
            return self.encoder(*fetched)
        except ImageError as exc:
            return exc.reason, f"{url}: {exc}"

    def process(self, table: pa.Table) -> pa.Table:
        if self._fetcher is None:  # here, not in each fetch thread: one fetcher, one cache
            self.setup()
        urls = table.column("url").to_pylist()
        # Threads fetch, check, and finish what they can (JPEGs); this thread runs
        # img2dataset's Resizer on the other bodies as they arrive, in order. It must be
        # one thread: that resizer silences OpenCV by swapping the process's stdout/stderr
        # file descriptors, which is not thread-safe.
        with ThreadPoolExecutor(max_workers=min(self.threads, max(len(urls), 1))) as pool:
            fetched = pool.map(self._body, urls)
            outcomes = [self._image(url, item) for url, item in zip(urls, fetched)]
        columns: dict[str, list] = {name: [] for name in IMAGE_COLUMNS}
        for outcome in outcomes:
            image = outcome if isinstance(outcome, StoredImage) else None
            columns["image_bytes"].append(image.data if image and self.keep_bytes else None)
            columns["width_px"].append(image.width_px if image else None)
            columns["height_px"].append(image.height_px if image else None)
            columns["format"].append(image.format if image else None)
            columns["sha256"].append(image.sha256 if image else None)
        table = set_columns(
            table, {k: pa.array(v, WORK_SCHEMA.field(k).type) for k, v in columns.items()}
        )
        return _mark_failures(table, outcomes)


def _mark_failures(table: pa.Table, outcomes: list) -> pa.Table:
    failures = {i: o for i, o in enumerate(outcomes) if isinstance(o, tuple)}
    detail = pa.array([failures[i][1] if i in failures else None for i in range(len(outcomes))])
    for reason in sorted({reason for reason, _ in failures.values()}):
        mask = pa.array([i in failures and failures[i][0] == reason for i in range(len(outcomes))])
        table = mark(table, mask, STATUS_REJECTED, reason, detail)
    return table


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")

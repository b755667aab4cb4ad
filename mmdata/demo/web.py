"""The demo's web part: a URL+caption list served from 127.0.0.1, faults included.

The list mixes good images with what a crawl of the web meets (dead links, a server
error, a rate limit, a truncated body, HTML served as a JPEG, an opt-out header, a
robots.txt rule, a decompression bomb, a redirect loop) and what the filters are for
(a repeated URL, the same bytes at two URLs, a re-encoded copy, a German caption, a
mojibake caption, a one-word caption). Every row ends in the corpus or as a reject.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from mmdata.demo.webserver import FaultServer

TEMPLATES = [
    "four coloured discs scattered over a soft grey gradient",
    "bright round spots floating on a pale background",
    "a simple abstract picture of overlapping coloured circles",
    "colourful dots of different sizes on a smooth grey backdrop",
]
#: (path on the demo server, caption); image ids are url_list:<row number>.
FAULT_ROWS = [
    ("/gen/2.jpg", "the same picture linked a second time"),  # duplicate_url
    ("/gen/3.jpg?copy=1", "an exact copy of picture three at another address"),  # duplicate_image
    ("/gen/4.jpg?q=30", "a heavily recompressed copy of picture four"),  # near_duplicate
    ("/gen/13.jpg", "bunte Kreise auf einem grauen Hintergrund im Abendlicht"),  # language
    ("/gen/14.jpg", "the cafÃ© sign glowing with round lights"),  # text_fix repairs it
    ("/gen/15.jpg", "circles"),  # caption_too_short
    ("/status/404", "a picture that was deleted long ago"),
    ("/status/500", "a picture on a server that keeps failing"),
    ("/flaky/429", "a picture behind a rate limit that lets us in on retry"),
    ("/truncated.jpg", "a picture whose download was cut off halfway"),
    ("/html-as-jpeg.jpg", "an error page that claims to be a photograph"),
    ("/noai.jpg", "a picture whose owner opted out of AI training"),
    ("/private/secret.jpg", "a picture in a folder robots.txt keeps crawlers out of"),
    ("/bomb.png", "a tiny file that claims to be a gigantic image"),
    ("/loop/a", "a link that redirects in circles forever"),
]
PORT_FILE = "web_port"


def rows(num_good: int = 12) -> list[tuple[str, str]]:
    """The demo's (path, caption) rows: ``num_good`` plain images, then the faults."""
    good = [
        (f"/gen/{n}.jpg", f"{TEMPLATES[n % len(TEMPLATES)]}, picture {n}")
        for n in range(1, num_good + 1)
    ]
    return good + FAULT_ROWS


def write_url_list(data_dir: Path, base_url: str) -> Path:
    """Write ``web_urls.jsonl`` (url, caption) for the server at ``base_url``."""
    path = data_dir / "web_urls.jsonl"
    lines = [json.dumps({"url": base_url + p, "caption": c}) for p, c in rows()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_server(data_dir: Path) -> FaultServer:
    """Start the demo server, on the port of the last demo when it is free.

    The same port keeps the URL list byte-identical, so a second demo run finds every
    shard done instead of seeing a new list.
    """
    port_file = data_dir / PORT_FILE
    port = int(port_file.read_text()) if port_file.exists() else 0
    try:
        server = FaultServer(slow_s=1.0, port=port)
    except OSError:
        server = FaultServer(slow_s=1.0)
    port_file.write_text(str(server.server_port))
    return server


@contextlib.contextmanager
def serving(data_dir: Path) -> Iterator[Path]:
    """Serve the demo's web images while the block runs; yields the URL list path."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with start_server(data_dir) as server:
        yield write_url_list(data_dir, f"http://127.0.0.1:{server.server_port}")

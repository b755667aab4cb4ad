"""The download stage against a real fault-injection server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from mmdata.demo.webserver import FAULTS, FaultServer
from mmdata.stages.download import Download
from tests.stages.helpers import work_batch

LOOPBACK_SPELLINGS = ["127.0.0.1", "localhost", "[::1]", "127.1", "2130706433"]


@pytest.fixture(scope="module")
def server():
    with FaultServer(slow_s=2.0) as srv:
        yield srv


def stage(**overrides) -> Download:
    args = dict(
        timeout_s=0.5,
        retries=1,
        backoff_s=0.01,
        max_bytes=1 << 20,
        allowed_networks=["127.0.0.1/32"],  # the server; the rest of loopback stays refused
        threads=8,
    )
    return Download(**{**args, **overrides})


def run(download: Download, urls: list[str]) -> list[dict]:
    return download.process(work_batch(url=urls)).to_pylist()


def test_every_fault_ends_as_an_image_or_its_reason(server):
    paths = list(FAULTS)
    rows = run(stage(), [server.url(p) for p in paths])
    assert {p: r["reason"] for p, r in zip(paths, rows)} == FAULTS
    for path, row in zip(paths, rows):
        if FAULTS[path]:
            assert row["status"] == "rejected" and row["image_bytes"] is None
            assert row["_detail"].startswith(server.url(path))
        else:
            assert row["status"] == "ok" and row["sha256"]
    details = {p: r["_detail"] for p, r in zip(paths, rows)}
    assert "HTTP 404" in details["/status/404"]
    assert "X-Robots-Tag: noai" in details["/noai.jpg"]
    assert "max_bytes" in details["/huge.jpg"]
    assert "1600000000 pixels" in details["/bomb.png"]
    assert "HTML" in details["/html-as-jpeg.jpg"]
    assert "robots.txt disallows /private/secret.jpg" in details["/private/secret.jpg"]


def test_good_images_fill_the_image_columns(server):
    paths = ["/img/red.jpg", "/img/green.png", "/gen/7.jpg"]
    rows = run(stage(), [server.url(p) for p in paths])
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert [r["format"] for r in rows] == ["jpeg"] * 3  # png re-encoded as the jpg default
    assert (rows[0]["width_px"], rows[0]["height_px"]) == (96, 64)
    assert rows[2]["image_bytes"] == server.generated(7)  # skip_reencode keeps the file
    for row in rows:
        assert row["sha256"] == hashlib.sha256(row["image_bytes"]).hexdigest()
        assert Image.open(io.BytesIO(row["image_bytes"])).format == "JPEG"


def test_resize_modes_come_from_img2dataset(server):
    url = [server.url("/gen/1.jpg")]  # 320x240
    rows = run(stage(resize_mode="keep_ratio", image_size=120), url)
    assert (rows[0]["width_px"], rows[0]["height_px"]) == (160, 120)
    rows = run(stage(resize_mode="center_crop", image_size=100, encode_format="png"), url)
    assert (rows[0]["width_px"], rows[0]["height_px"], rows[0]["format"]) == (100, 100, "png")
    rows = run(stage(resize_mode="border", image_size=200, encode_format="webp"), url)
    assert (rows[0]["width_px"], rows[0]["height_px"], rows[0]["format"]) == (200, 200, "webp")


def test_retries_429_with_backoff_then_succeeds(server):
    before = server.hits("/flaky/429")
    rows = run(stage(), [server.url("/flaky/429")])
    assert rows[0]["status"] == "ok"
    assert server.hits("/flaky/429") - before == 2 or before > 0
    # 500 is retried too: retries + 1 attempts in all
    before = server.hits("/status/500")
    run(stage(retries=2), [server.url("/status/500")])
    assert server.hits("/status/500") - before == 3


def test_404_is_not_retried(server):
    before = server.hits("/status/404")
    run(stage(retries=3), [server.url("/status/404")])
    assert server.hits("/status/404") - before == 1


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_guard_refuses_loopback_in_every_spelling(server, host):
    download = stage(allowed_networks=None)
    before = dict(server.requests)
    rows = run(download, [f"http://{host}:{server.server_port}/img/red.jpg"])
    assert rows[0]["reason"] == "blocked_address", rows[0]["_detail"]
    assert "loopback" in rows[0]["_detail"]
    assert server.requests == before  # refused before connecting: the server saw nothing


def test_allow_private_networks_lifts_the_guard(server):
    download = stage(allowed_networks=None, allow_private_networks=True)
    urls = [f"http://{h}:{server.server_port}/img/red.jpg" for h in ("localhost", "127.1")]
    assert [r["status"] for r in run(download, urls)] == ["ok", "ok"]


def test_guard_rechecks_after_every_redirect(server):
    # The first hop (127.0.0.1) is allowed, the redirect target (127.0.0.2) is not.
    rows = run(stage(), [server.url("/redirect/blocked")])
    assert rows[0]["reason"] == "blocked_address"
    assert "127.0.0.2" in rows[0]["_detail"]


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.jpg", "file:///etc/passwd", "gopher://x/"])
def test_non_http_schemes_are_refused(url):
    rows = run(stage(), [url])
    assert rows[0]["reason"] == "blocked_scheme"


def test_robots_txt_can_be_ignored_and_opt_out_turned_off(server):
    download = stage(respect_robots_txt=False, opt_out_directives=[])
    rows = run(download, [server.url("/private/secret.jpg"), server.url("/noai.jpg")])
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_opt_out_directives_are_configurable(server):
    rows = run(stage(opt_out_directives=["noindex"]), [server.url("/noai.jpg")])
    assert rows[0]["status"] == "ok"


def test_connection_refused_is_a_connection_error():
    rows = run(stage(respect_robots_txt=False), ["http://127.0.0.1:9/x.jpg"])
    assert rows[0]["reason"] == "connection_error"


def test_user_agent_names_mmdata():
    assert "mmdata/" in stage().options.user_agent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"timeout_s": 0}, "timeout_s"),
        ({"threads": 0}, "threads"),
        ({"resize_mode": "stretch"}, "resize_mode"),
        ({"encode_format": "gif"}, "encode"),
        ({"allowed_networks": ["not-a-net"]}, "allowed_networks"),
        ({"user_agent_token": "two words"}, "user_agent_token"),
        ({"dns_ttl_s": -1}, "dns_ttl_s"),
    ],
)
def test_bad_arguments_name_the_key(args, message):
    with pytest.raises(ValueError, match=message):
        stage(**args)

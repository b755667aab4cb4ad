"""Headless Chromium for the rendering tests: Debian's chromium package, installed here
when it is missing and the test runs as root with apt (as on CI's fresh machines)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _install_chromium() -> str:
    """apt-get install chromium; returns why not when it cannot be had."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "chromium is not installed and apt-get as root is not available"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    for command in (install, ["apt-get", "update", "-q"], install):
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode == 0 and command is install and shutil.which("chromium"):
            return ""
    return f"apt-get install chromium failed: {done.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium executable (installed on first use), or the test is skipped saying why."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    why = _install_chromium()
    if why:
        pytest.skip(why)
    return shutil.which("chromium")  # type: ignore[return-value]

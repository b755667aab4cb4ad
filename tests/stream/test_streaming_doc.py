"""docs/streaming.md's Python blocks run, as written, on the demo corpus (the OpenCLIP
command of the same page is run by tests/stream/test_openclip.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "streaming.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)


@pytest.mark.ray
def test_streaming_doc_python_blocks_run(demo_out, tmp_path):
    (tmp_path / "mmdata-demo").symlink_to(demo_out)
    blocks = python_blocks()
    assert any("StatefulDataLoader" in b and "load_state_dict" in b for b in blocks)
    outputs = []
    for body in blocks:
        done = subprocess.run(
            [sys.executable, "-c", body], cwd=tmp_path, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{body}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)
    resumed = re.search(r"resumed after (\d+) samples, (\d+) more", "".join(outputs))
    assert resumed and int(resumed.group(1)) == 24 and int(resumed.group(2)) > 0

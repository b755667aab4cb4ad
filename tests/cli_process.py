"""The mmdata CLI in a subprocess of its own process group, for crash-and-resume tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

CLI_MODULE = ("-m", "mmdata.commands.cli")


def run_cli(
    *args: str,
    env_extra: dict | None = None,
    entry: Sequence[str] = CLI_MODULE,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``python <entry> <args>`` in its own process group, and reap the group
    afterwards: a killed Ray driver leaves its embedded cluster's agents behind, as a
    real crash would."""
    proc = subprocess.Popen(
        [sys.executable, *entry, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env_extra or {})},
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

"""Whether a process runs, by pid: for processes that are not our children to wait for (the
dev stack's parts after `up` exited, a job pool's children once their forkserver is gone)."""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:  # reaped between the signal and the read: gone
        return False
    except OSError:
        return True

"""CPU time as /proc counts it: of given processes, and of the whole machine whoever spent it.
On a machine the broker, the stages and the load generator share, these say what a unit of work
costs each part, and how close to full the cores were."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, every thread) the processes have used so far; NaN when none
    of them can be read (gone, or none given)."""
    total, read = 0.0, False
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total, read = total + (int(fields[11]) + int(fields[12])) / TICK, True
    return total if read else float("nan")


def broker_pids() -> list[int]:
    """The throwaway broker's JVM (a child of this process), if this run started one."""
    me, found = str(os.getpid()), []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = Path(f"/proc/{d}/stat").read_text().rpartition(")")[2].split()[1]
                java = Path(f"/proc/{d}/cmdline").read_bytes().startswith(b"java")
            except OSError:
                continue
            if ppid == me and java:
                found.append(int(d))
    return found


def machine_busy_s() -> float:
    """CPU seconds all cores spent on anything but idling (/proc/stat: user, nice, system,
    irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:9]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields)
    return (user + nice + system + irq + softirq + steal) / TICK

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


def jit_cpu_s(pids: list[int]) -> float:
    """CPU seconds the JVMs' JIT compiler threads ("C1 CompilerThread0", "C2 ...") have used so
    far. A broker a benchmark has just started spends a large share of its first minute of load
    compiling its hot paths (measured: about half its CPU in the first 25 s of the REST run);
    a broker that has been serving for a while does not."""
    total = 0.0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                if "CompilerThre" not in Path(f"/proc/{pid}/task/{t}/comm").read_text():
                    continue
                fields = Path(f"/proc/{pid}/task/{t}/stat").read_text().rpartition(")")[2].split()
            except OSError:  # the thread ended meanwhile
                continue
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


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

"""CPU time and peak resident memory of a process and its descendants, from /proc."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw.rsplit(")", 1)[1].split()  # fields from 3 (state) on; comm may hold spaces


def process_tree(root: int) -> list[int]:
    """The root and every live descendant (LiteLLM may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the processes, plus cutime+cstime (their children already reaped).

    Takes the pids found once by `process_tree`: scanning /proc costs milliseconds,
    too long to do on the load generator's loop while it keeps a schedule.
    """
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            f = _stat_fields(pid)
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def tree_memory_mb(root: int, field: str = "VmHWM") -> float:
    """Sum of a /proc/<pid>/status memory field over the tree: VmHWM is each process's
    own peak resident set, VmRSS its current one."""
    kb = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    kb += int(line.split()[1])
    return kb / 1024

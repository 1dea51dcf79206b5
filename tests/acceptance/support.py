"""Helpers for acceptance tests that kill processes: finding a supervisor's children, reading side effects."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from djtasks.models import Job


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..." - comm may contain spaces, so split after the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


def worker_children(pid: int) -> list[int]:
    """A supervisor's worker processes: not its fork server (named ``djtasks-forksrv``), nor the resource
    tracker ``spawn`` starts where workers are spawned; neither runs jobs."""
    found = []
    for child in children_of(pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            cmdline = Path(f"/proc/{child}/cmdline").read_text()
        except OSError:
            continue
        if comm != "djtasks-forksrv" and "resource_tracker" not in cmdline:
            found.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def statuses() -> Counter:
    return Counter(Job.objects.values_list("status", flat=True))


def side_effects(path: Path) -> Counter:
    """Lines written by chaos_touch/touch: job id -> how many executions recorded their side effect."""
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())

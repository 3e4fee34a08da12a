"""The processes a test started, read from /proc: Ray workers below a driver, their peak memory, and kills.

Only descendants of a given process are ever looked at or signalled, so other Ray instances on
the machine (other test runs) are never touched.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
IDLE = "ray::IDLE"  # the title of a pooled Ray worker between tasks


def available() -> bool:
    return (PROC / "self" / "status").exists()


def descendants(root: int) -> dict[int, str]:
    """pid -> process title (Ray sets ``ray::<task or actor>``) of every process below ``root``."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            found[pid] = title(pid)
    return found


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): with the pid, one process's identity."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def title(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far; 0 once it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in MiB; 0 once it is gone. It counts the
    pages of Ray's shared-memory object store that the process has mapped."""
    return _status_mb(pid, "VmHWM")


def private_rss_mb(pid: int) -> int:
    """The process's own resident memory now (RssAnon), in MiB: without mapped object-store pages."""
    return _status_mb(pid, "RssAnon")


def _status_mb(pid: int, key: str) -> int:
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) // 1024
    return 0


@dataclass
class KillRule:
    """Kill (SIGKILL) the first process whose title matches, once."""

    name: str
    matches: Callable[[str], bool]
    killed: list[tuple[int, str, float]] = field(default_factory=list)


class Watcher(threading.Thread):
    """Polls the processes below ``root``: records each one's peak memory and title, and applies kill rules."""

    def __init__(self, root: int, rules: list[KillRule] = (), interval: float = 0.05):
        super().__init__(daemon=True)
        self.root, self.rules, self.interval = root, list(rules), interval
        self.peaks: dict[int, tuple[int, str]] = {}  # pid -> (peak MiB, the title seen at that peak)
        self.private_peaks: dict[int, tuple[int, str]] = {}  # the same for private memory, as sampled
        self.initial = {pid: peak_rss_mb(pid) for pid in descendants(root)}  # peaks reached before the watch
        self.initial_private = {pid: private_rss_mb(pid) for pid in self.initial}
        self._cpu_before = {pid: cpu_seconds(pid) for pid in self.initial}
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds used while watched (as of the last poll)
        self.seen: dict[int, str] = {}
        self.last_task: dict[int, str] = {}  # pid -> the last title seen that was not an idle pooled worker's
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.poll()
            self._stop_event.wait(self.interval)

    def poll(self) -> None:
        for pid, name in descendants(self.root).items():
            self.seen[pid] = name
            if name == IDLE:  # a pooled worker between tasks: its memory is what its last task left
                name = f"{IDLE} after {self.last_task.get(pid, 'no task')}"
            else:
                self.last_task[pid] = name.removeprefix("ray::")
            self.cpu[pid] = max(self.cpu.get(pid, 0.0), cpu_seconds(pid) - self._cpu_before.get(pid, 0.0))
            peak, private = peak_rss_mb(pid), private_rss_mb(pid)
            if peak > self.peaks.get(pid, (0, ""))[0]:
                self.peaks[pid] = (peak, name)
            if private > self.private_peaks.get(pid, (0, ""))[0]:
                self.private_peaks[pid] = (private, name)
            for rule in self.rules:
                if not rule.killed and rule.matches(name):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    rule.killed.append((pid, name, round(time.monotonic() - self._t0, 1)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def cpu_total(self) -> float:
        """CPU seconds the watched processes used (a load-independent measure of the work)."""
        return round(sum(self.cpu.values()), 1)

    def ray_peaks(self, private: bool = False) -> dict[str, int]:
        """Peak MiB per Ray worker role (the largest over the processes that played it), counting only
        peaks above what the process held when the watch began: a reused worker's older peak, or memory
        it kept from earlier work, belongs to that work. ``private``: sampled private memory instead of
        the kernel's high-water mark."""
        roles: dict[str, int] = {}
        peaks, initial = (self.private_peaks, self.initial_private) if private else (self.peaks, self.initial)
        for pid, (peak, name) in peaks.items():
            if name.startswith("ray::") and peak > initial.get(pid, 0):
                role = name.removeprefix("ray::").split(".", 1)[0]
                roles[role] = max(roles.get(role, 0), peak)
        return dict(sorted(roles.items(), key=lambda item: -item[1]))


def end_all(processes: dict[int, str], grace: float = 20.0) -> list[int]:
    """Wait for the processes a killed driver left (pid -> title) to exit by themselves; SIGKILL, by pid,
    those still there under the same title after ``grace`` seconds. Returns the pids it killed."""
    def still_there() -> list[int]:  # same pid, same non-empty title: not a recycled pid, not a zombie
        return [pid for pid, name in processes.items() if name and title(pid) == name]

    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and still_there():
        time.sleep(0.5)
    left = still_there()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left

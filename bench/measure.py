"""Running a bench's child processes, measured: wall seconds, peak memory and the CPU seconds of every process
below the bench (``tests.processes.Watcher``), and the environment they run in."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measured(command: list[str], log: Path, env: dict[str, str]) -> dict:
    """Run a child to its end; wall seconds, the child's own peak memory and its Ray workers' largest."""
    from tests.processes import Watcher, peak_rss_mb

    watcher = Watcher(os.getpid(), interval=0.2)
    watcher.start()
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        watcher.peaks[child.pid] = (peak_rss_mb(child.pid), "")
        child.wait()
    seconds = time.perf_counter() - started
    watcher.stop()
    if child.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({child.returncode}); see {log}")
    workers = [peak for pid, (peak, name) in watcher.peaks.items() if name.startswith("ray::")]
    cpu_by_role: dict[str, float] = {}  # the profile: CPU seconds per kind of process (title at its peak memory)
    for pid, cpu in watcher.cpu.items():
        title = "driver" if pid == child.pid else watcher.peaks.get(pid, (0, ""))[1] or watcher.seen.get(pid, "")
        role = title.removeprefix("ray::").split(" ")[0].split("/")[-1][:60] or "?"
        cpu_by_role[role] = cpu_by_role.get(role, 0.0) + cpu
    # the largest workers by their own (private) memory's peak, with their title then: what held it (a pooled
    # worker's peak resident memory comes later, from object-store pages its later tasks mapped, and its title
    # then named those tasks); and their peak resident memory
    largest = sorted(((private, name, watcher.peaks.get(pid, (0, ""))[0]) for pid, (private, name)
                      in watcher.private_peaks.items() if name.startswith("ray::")), reverse=True)[:3]
    return {
        "seconds": round(seconds, 2),
        "peak_driver_mb": watcher.peaks.get(child.pid, (0, ""))[0],
        "peak_worker_mb": max(workers, default=0),
        "largest_workers": [{"title": name[:80], "private_peak_mb": private, "peak_mb": peak}
                            for private, name, peak in largest],
        "peak_worker_private_mb": max((private for pid, (private, name) in watcher.private_peaks.items()
                                       if name.startswith("ray::")), default=0),
        "ray_workers": len(workers),
        "cpu_s": watcher.cpu_total(),
        "cpu_s_by_process": {k: round(v, 1) for k, v in sorted(cpu_by_role.items(), key=lambda kv: -kv[1]) if v >= 0.5},
    }


def last_record(log: Path) -> dict:
    """The last JSON line a measured child wrote to its log (``emit``): what it reports, after Ray's log lines."""
    lines = log.read_text(encoding="utf-8").splitlines()
    return json.loads(next(line for line in reversed(lines) if line.startswith("{")))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])  # this checkout's code
    env["RAY_worker_niceness"] = "0"  # Ray's default (15) would put its workers below the naive process
    env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    return env

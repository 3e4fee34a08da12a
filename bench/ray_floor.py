"""What any program pays on this machine to run Ray Data at all: the part of a build's floor that is Ray's.

    python bench/ray_floor.py [--cpus N] [--executions 5] [--rounds 3]

Each round runs one child process that does what a build does around its work, and nothing else: it
imports Ray Data, starts a local Ray instance as a build does (``cluster.connect_ray``, ``--cpus``
CPUs), runs ``--executions`` Ray Data executions of 3 rows through one map each (a build runs
5 or 6), and stops Ray as a build does (``cluster.stop_ray``). The child times each step; the bench
times the child from start to exit and counts the CPU seconds of it and of every process below it
(Ray's daemons, Ray Data's actors, the workers), as ``bench/e2e.py`` does for a build.

Prints one JSON line per round and then the medians. ``bench/e2e.py``'s floor (a build of 3 records
per input file) less this is what the pipeline adds to Ray's own start-up: its imports, the tokenizer
and model loads, the report's ``Tally`` actor, the commit. No build that starts Ray itself can take
less than this, nor can a refresh.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import child_env, last_record, measured  # noqa: E402
from bench.shared_data import emit  # noqa: E402

ROWS = 3


def child(cpus: int, executions: int) -> dict:
    """The steps of a build that does no work, each timed (seconds)."""
    started = time.perf_counter()
    laps: dict[str, float] = {}

    def lap(name: str) -> None:
        laps[name] = round(time.perf_counter() - started - sum(laps.values()), 2)

    import ray.data

    from pipeline import cluster

    lap("import")
    cluster.connect_ray(cpus)
    lap("ray_init")
    for execution in range(executions):
        rows = ray.data.from_items([{"n": n} for n in range(ROWS)]).map_batches(_same, batch_format="pyarrow")
        assert rows.materialize().count() == ROWS
        lap("first_execution" if execution == 0 else f"execution_{execution + 1}")
    cluster.stop_ray()
    lap("stop_ray")
    return laps


def _same(batch):
    return batch


def ray_data_alone(cpus: int, executions: int, log: Path, env: dict[str, str]) -> dict:
    """One child (``child``), measured: wall and CPU seconds, CPU seconds per kind of process, and its steps."""
    run = measured([sys.executable, __file__, "child", str(cpus), str(executions)], log, env)
    return {"seconds": run["seconds"], "cpu_s": run["cpu_s"], "steps": last_record(log),
            "cpu_s_by_process": run["cpu_s_by_process"]}


def main() -> None:
    if sys.argv[1:2] == ["child"]:
        emit(child(int(sys.argv[2]), int(sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="Ray CPUs (default: all)")
    parser.add_argument("--executions", type=int, default=5, help="Ray Data executions per child (a build: 5-6)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.executions < 1 or args.rounds < 1:
        parser.error("--executions and --rounds must be at least 1")

    emit({"bench": "ray_floor", "cpus": args.cpus, "cores": os.cpu_count(), "executions": args.executions})
    rounds = []
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.rounds):
            log = Path(scratch) / f"child-{number}.log"
            rounds.append(ray_data_alone(args.cpus, args.executions, log, child_env()))
            emit({**rounds[-1], "load_average": round(os.getloadavg()[0], 2)})
    emit({
        "seconds": statistics.median(row["seconds"] for row in rounds),
        "cpu_s": statistics.median(row["cpu_s"] for row in rounds),
        "steps": {step: statistics.median(row["steps"][step] for row in rounds) for step in rounds[0]["steps"]},
    })


if __name__ == "__main__":
    main()

"""A local Ray instance held for a bench's builds (``--running-ray``), as builds on a cluster join one.

    python bench/running_ray.py [--num-cpus N]   # prints the instance's address, holds it until stdin closes

A bench's builds then join it through ``RAY_ADDRESS`` (``builds_env``) and pay none of Ray's own start-up
and shutdown: what is left of the floor when Ray already runs, as under ``ray job submit``. The
instance has a build's options (``cluster.LOCAL_RAY_OPTIONS``) and no token authentication
(``RAY_AUTH_MODE=disabled``): a build that joins an instance has no token of it. While it runs, its
processes are the bench's descendants, so the CPU seconds a bench counts for a build include theirs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@contextmanager
def builds_env(env: dict[str, str], running_ray: bool, num_cpus: int | None = None) -> Iterator[dict[str, str]]:
    """``env`` as it is, or with ``running_ray`` ``RAY_ADDRESS`` naming a local Ray instance of ``num_cpus`` CPUs
    (default: all) held while the context lasts."""
    if not running_ray:
        yield env
        return
    env = {**env, "RAY_AUTH_MODE": "disabled"}
    cpus = [] if num_cpus is None else ["--num-cpus", str(num_cpus)]
    holder = subprocess.Popen([sys.executable, __file__, *cpus], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env, cwd=REPO)
    try:
        address = holder.stdout.readline().strip()
        if not address:
            raise RuntimeError("the Ray instance for --running-ray did not start")
        yield {**env, "RAY_ADDRESS": address}
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


def hold() -> None:
    import ray

    from pipeline.cluster import LOCAL_RAY_OPTIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-cpus", type=int, default=None, help="the instance's CPUs (default: all)")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=args.num_cpus, log_to_driver=False, **LOCAL_RAY_OPTIONS)
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    hold()

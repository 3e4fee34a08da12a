"""A real multi-node Ray cluster on this machine, started the way an operator starts one.

``ray start --head`` and ``ray start --address`` run with ``--block``, each under ``timeout`` (so
nothing outlives a killed test run by more than ``LIFETIME_S``) and in a session of its own.
``stop()`` ends exactly those process groups plus every process that was below them (the job
entrypoint starts its own session), checked by pid *and* start time so that a recycled pid is
never hit. Never ``ray stop``: it stops every Ray on the machine, other people's included.

Token auth is on (``RAY_AUTH_MODE=token``) with a token made for this cluster and passed in
``RAY_AUTH_TOKEN``, so ``~/.ray/auth_token`` is neither read nor written. The dashboard listens
on 127.0.0.1 only, on free ports, like every other port this module chooses. (Ray's core gRPC
servers have no bind-address option in Ray 2.60 and listen on all interfaces.)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests import processes

LIFETIME_S = 1800  # hard bound on any process started here, even if the test run is killed
STOP_GRACE_S = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_command() -> list[str]:
    """The ``ray`` CLI of the interpreter running the tests (its environment, its packages)."""
    return [sys.executable, "-m", "ray.scripts.scripts"]


def _descendants(root: int) -> dict[int, str | None]:
    """{pid: start time} of every process below ``root`` right now."""
    return {pid: processes.start_time(pid) for pid in processes.descendants(root)}


class LocalRayCluster:
    """Head plus worker nodes as separate ``ray start`` processes; ``stop()`` ends exactly them."""

    def __init__(self, root: Path, env: dict[str, str] | None = None):
        self.root = root  # short: Ray's unix socket paths must stay under ~107 characters
        self.token = secrets.token_hex(24)
        self.env = {
            **(env if env is not None else os.environ),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # the job's `python`
        }
        self.env.pop("RAY_ADDRESS", None)
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.processes: list[subprocess.Popen] = []
        self.node_dirs: list[Path] = []

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_head(self, num_cpus: int, object_store_bytes: int = 256 << 20) -> None:
        self._start(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--num-cpus={num_cpus}",
                f"--object-store-memory={object_store_bytes}",
            ],
        )

    def add_node(self, num_cpus: int, num_gpus: int = 0, object_store_bytes: int = 256 << 20) -> None:
        self._start(
            f"node{len(self.node_dirs)}",
            [
                f"--address=127.0.0.1:{self.gcs_port}",
                f"--num-cpus={num_cpus}",
                f"--num-gpus={num_gpus}",
                f"--object-store-memory={object_store_bytes}",
            ],
        )

    def _start(self, name: str, args: list[str]) -> None:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True)
        command = [
            "timeout", "--kill-after=30", str(LIFETIME_S),
            *ray_command(), "start", "--block", *args,
            f"--temp-dir={temp_dir}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            "--disable-usage-stats",
        ]  # fmt: skip
        with open(self.root / f"{name}.log", "wb") as log:
            process = subprocess.Popen(  # started outside any checkout, as on a cluster: its workers start there
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.root,
            )  # fmt: skip
        self.processes.append(process)
        self.node_dirs.append(temp_dir)

    def request(self, path: str, token: str | None = "own") -> tuple[int, bytes]:
        """GET on the dashboard with this cluster's token (``token=None``: none at all)."""
        headers = {} if token is None else {"Authorization": f"Bearer {self.token if token == 'own' else token}"}
        try:
            with urllib.request.urlopen(
                urllib.request.Request(self.dashboard_url + path, headers=headers), timeout=10
            ) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def alive_nodes(self) -> list[dict]:
        status, body = self.request("/api/v0/nodes?detail=1")
        if status != 200:
            return []
        nodes = json.loads(body)["data"]["result"]["result"]
        return [node for node in nodes if node.get("state") == "ALIVE"]

    def wait_for_nodes(self, count: int, timeout_s: float = 180) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a `ray start` exited early ({process.returncode}); see {self.root}/*.log")
            try:
                nodes = self.alive_nodes()
            except (OSError, ValueError, KeyError):
                nodes = []
            if len(nodes) >= count:
                return nodes
            time.sleep(2)
        raise TimeoutError(f"{count} Ray nodes not alive after {timeout_s:.0f} s; see {self.root}/*.log")

    def ray_cli(self, *args: str, timeout_s: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """A ``ray`` CLI command (e.g. ``job submit``) with this cluster's token, output captured."""
        return subprocess.run(
            [*ray_command(), *args],
            check=False,
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def stop(self) -> None:
        """SIGTERM each started group, wait, SIGKILL what is left of it and of the processes that were below it.

        A group is signalled only while its leader is alive and unreaped (so the group id is still
        ours); processes that left the group (the job entrypoint) are killed by pid + start time.
        """
        for process in reversed(self.processes):
            if process.poll() is not None:
                continue
            below = _descendants(process.pid)
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
            for pid, started in below.items():
                if started is not None and processes.start_time(pid) == started:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass

"""Determinism and faults: the same inputs and config give the same corpus, row for row, whatever happens.

A reference build runs on the session's local Ray (2 CPUs). The same config is then built through
the CLI in a subprocess with its own Ray on 1 CPU: that driver is killed with SIGKILL as soon as it
has written output files (so the rerun finds a dead build's files), and the rerun, undisturbed by
the driver kill, has its segmenter actor killed mid-batch (Ray restarts it and retries the batch)
and a worker killed mid-task (Ray retries the task). Docs, fates and shards must equal the
reference's, row order included, and ``verify`` must pass.

Small batches and partitions make the block layout matter, so that differences of parallelism
would show; one 2 MB document makes the tasks long enough to be caught running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inspection.verify import verify
from pipeline.config import load_config
from pipeline.driver import build_corpus
from tests import processes
from tests.bad_inputs import write_bad_files, write_large_files
from tests.conftest import REPO
from tests.contracts import read_shards, read_table

pytestmark = pytest.mark.skipif(not processes.available(), reason="needs Linux /proc to find and kill Ray's workers")

SAMPLE = REPO / "examples" / "sample"
BUILD_TIMEOUT_S = 900
SEGMENTER_RUNNING = "ray::MapWorker(MapBatches(SegmenterActor)).submit"  # Ray's title for an actor running a batch
# a plain task, which Ray retries elsewhere: the legacy model's segmentation, fused with the docs writer, the
# tokenizer and the packer
TASK_TO_KILL = "MapBatches(_segment_batch)"


def write_config(root: Path, output: Path, model_dir: Path, vocab_path: Path) -> Path:
    config = root / f"{output.name}.yaml"
    config.write_text(
        json.dumps(
            {
                "inputs": [str(SAMPLE / "*.jsonl"), str(SAMPLE / "*.txt"), str(root / "in")],
                "output": str(output),
                "read": {"batch_size": 64},
                "normalize": {"batch_size": 64},
                "dedup": {"batch_size": 64},
                "segment": {"model": str(model_dir), "batch_size": 16},
                "tokenize": {"tokenizer": str(vocab_path), "max_seq_len": 64, "batch_size": 32},
                "write": {"shard_rows": 40},
            }
        )
    )
    return config


def run_cli(config: Path, num_cpus: int, rules: list[processes.KillRule] = (), kill_driver_when=None):
    """``python -m pipeline build CONFIG --num-cpus N`` in a subprocess with its own local Ray.

    A watcher applies ``rules`` to the processes below it. When ``kill_driver_when()`` turns true the
    driver gets SIGKILL, and the Ray processes it started are given time to exit, then killed by pid.
    Returns (exit status, or None when the driver was killed; the end of its output; the watcher).
    """
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # never the session's Ray
    log = config.with_name(f"{config.stem}-{time.monotonic_ns()}.log")
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "build", str(config), "--num-cpus", str(num_cpus)],
            cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env,
        )
    watcher = processes.Watcher(process.pid, rules)
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    killed = False
    try:
        watcher.start()
        while process.poll() is None and not killed:
            killed = time.monotonic() > deadline or (kill_driver_when is not None and kill_driver_when())
            time.sleep(0.1)
    finally:
        watcher.stop()
        if process.poll() is None:  # asked to, out of time, or an error here: never leave a build running
            left = processes.descendants(process.pid)
            process.kill()
            process.wait()
            processes.end_all(left)
            killed = True
    tail = log.read_text(errors="replace")[-4000:]
    if killed and kill_driver_when is None:
        pytest.fail(f"the build did not finish in {BUILD_TIMEOUT_S} s:\n{tail}")
    return (None if killed else process.returncode), tail, watcher


@pytest.fixture(scope="module")
def reference(ray_local, tmp_path_factory, legacy_model_dir, vocab_path):
    root = tmp_path_factory.mktemp("determinism")
    write_bad_files(root / "in" / "bad")
    write_large_files(root / "in" / "large", big_chars=680_000)
    out = root / "reference"
    build_corpus(load_config(write_config(root, out, legacy_model_dir, vocab_path)))
    return {"root": root, "out": out, "model": legacy_model_dir, "vocab": vocab_path}


def test_one_cpu_a_killed_driver_and_killed_workers_give_the_same_corpus(reference):
    root, out = reference["root"], reference["root"] / "one-cpu"
    config = write_config(root, out, reference["model"], reference["vocab"])

    code, log, _ = run_cli(config, 1, kill_driver_when=lambda: any((out / "docs").glob("*.parquet")))
    assert code is None, f"the build ended before its driver could be killed:\n{log}"
    assert not (out / "manifest.json").exists()
    leftovers = sorted(p.name for d in ("docs", "fates", "shards") for p in (out / d).glob("*"))
    assert leftovers, "the killed build left no files to trip the rerun"

    task = processes.KillRule("segmenting task", lambda title: TASK_TO_KILL in title)
    code, log, watcher = run_cli(config, 1, [task])
    assert code == 0, log
    assert task.killed, f"no {task.name} was seen running; titles seen: {sorted(set(watcher.seen.values()))}"
    print(f"\nleft by the killed driver: {leftovers}; killed in the rerun: {task.killed}; "
          f"rerun: {watcher.cpu_total()} CPU s")
    assert_same_corpus(out, reference["out"])


def test_a_killed_segmentation_actor_is_replaced_and_gives_the_same_corpus(reference, neural_model_dir):
    """A neural model segments on an actor pool (the legacy model in the tasks killed above): Ray Data starts
    another actor and sends it the batch the killed one held."""
    root = reference["root"]
    want = root / "neural-reference"
    build_corpus(load_config(write_config(root, want, neural_model_dir, reference["vocab"])))
    out = root / "neural-killed"
    actor = processes.KillRule("segmenter actor", lambda title: title == SEGMENTER_RUNNING)
    code, log, watcher = run_cli(write_config(root, out, neural_model_dir, reference["vocab"]), 1, [actor])
    assert code == 0, log
    assert actor.killed, f"no segmenter actor was seen running; titles seen: {sorted(set(watcher.seen.values()))}"
    assert_same_corpus(out, want)


def assert_same_corpus(out: Path, want: Path) -> None:
    for folder in ("docs", "fates"):
        assert read_table(out, folder).equals(read_table(want, folder)), folder
    shards, _ = read_shards(out)
    wanted, _ = read_shards(want)
    assert shards.num_rows == wanted.num_rows and shards.equals(wanted)
    assert verify(str(out)) == []
    assert verify(str(want)) == []

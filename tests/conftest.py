"""Shared fixtures: a local Ray instance and the tiny models every test builds for itself (never the network)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
ASSETS = REPO / "examples" / "assets"
CWS_TRAINING_FILE = ASSETS / "cws_train.txt"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def shared_file(relative: str) -> Path:
    """A file from ../shared/data, or skip the test when this checkout has none."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"../shared/data/{relative} is not available")
    return path


def start_local_ray() -> None:
    """The tests' local Ray: 2 CPUs, set up as a build's own instance (idle workers kept: without that,
    every Ray Data execution starts fresh worker processes, and the suite's builds take 3-4 times as long)."""
    import ray

    from pipeline.cluster import LOCAL_RAY_OPTIONS

    ray.init(address="local", num_cpus=2, log_to_driver=False, ignore_reinit_error=True, **LOCAL_RAY_OPTIONS)


@pytest.fixture(scope="session")
def ray_local():
    """One small local Ray instance for every test that needs Ray Data."""
    import ray

    start_local_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def legacy_model_dir(tmp_path_factory) -> Path:
    from tests.ltp_models import train_legacy_cws_model

    return train_legacy_cws_model(tmp_path_factory.mktemp("ltp-legacy"), CWS_TRAINING_FILE)


@pytest.fixture(scope="session")
def neural_model_dir(tmp_path_factory) -> Path:
    from tests.ltp_models import build_tiny_neural_model

    return build_tiny_neural_model(tmp_path_factory.mktemp("ltp-neural"))


@pytest.fixture(scope="session")
def vocab_path(tmp_path_factory) -> Path:
    from tests.vocab import write_tiny_vocab

    return write_tiny_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt")


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> dict[str, Any]:
    """The bundled example built once per session with the README's command, plus a small shard
    size so that it has several shards: ``{"out": the corpus, "stdout"/"stderr": what the command printed}``.
    Read-only: a test that changes a corpus works on a copy."""
    out = tmp_path_factory.mktemp("sample-corpus") / "sample"
    command = ["build", "examples/sample.yaml", "--set", f"output={out}", "--set", "write.shard_rows=40"]
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *command], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "stderr": result.stderr}

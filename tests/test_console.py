"""What a build prints: its own stage lines and the summary, not Ray's logs (pipeline.console)."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys

from pipeline import console
from tests.conftest import REPO

RAY_LOG_LINE = re.compile(r"^\S+ \S+\t(INFO|WARNING|ERROR) ")  # Ray's Python log format
CORE_LOG_LINE = re.compile(r"^\[\S+ \S+ ([IWEF]) \d+ \d+\] (\S+):\d+: (.*)$")  # Ray's C++ log format


def test_a_build_prints_its_stages_and_no_ray_log_lines(sample_corpus):
    lines = sample_corpus["stderr"].splitlines()
    assert not [line for line in lines if RAY_LOG_LINE.match(line)]
    # not even Ray core's note on actor pools (ray-project/ray#57733, README): the sample's legacy model runs in tasks
    assert not [line for line in lines if CORE_LOG_LINE.match(line)]
    stage_lines = [line for line in lines if " pipeline stage " in line]
    assert stage_lines and len(stage_lines) == 2 * len([line for line in stage_lines if line.endswith(": started")])
    assert len(lines) < 40, lines
    assert "records" in sample_corpus["stdout"] and "wrote " in sample_corpus["stdout"]


def test_ray_datas_console_drops_its_harmless_warnings_only():
    console.setup(ray_data=True)
    handler = next(h for h in logging.getLogger("ray.data").handlers if h.get_name() == console.RAY_DATA_CONSOLE)

    def shown(message: str) -> bool:
        record = logging.LogRecord("ray.data.dataset", logging.WARNING, __file__, 1, message, None, None)
        return bool(handler.filter(record))

    # as Ray Data 2.60 logs them (ray/data/_internal/progress/utils.py, ray/data/dataset.py)
    assert not shown("Truncating long operator name to 100 characters. To disable this behavior, set ...")
    assert not shown("Warning: The Ray cluster currently does not have any available CPUs. The Dataset job will hang "
                     "unless more CPUs are freed up. A common reason is that cluster resources are used by Actors ...")
    assert shown("Warning: a block could not be read")


def test_verbose_shows_ray_datas_execution_lines(sample_corpus, tmp_path):
    corpus = tmp_path / "sample"
    shutil.copytree(sample_corpus["out"], corpus)
    result = subprocess.run([sys.executable, "-m", "pipeline", "pack", str(corpus), "--verbose"], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting execution of Dataset" in result.stderr

"""Exports: MosaicML Streaming MDS round trip (skipped without mosaicml-streaming)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.training.test_loader import make_corpus
from training.export import MDS_METADATA, export_mds, mds_columns


def test_mds_columns():
    assert mds_columns(("input_ids", "word_start"), 21128) == {
        "input_ids": "ndarray:uint16",
        "word_start": "ndarray:uint8",
    }
    assert mds_columns(("input_ids", "word_start", "chinese_ref"), 70000)["input_ids"] == "ndarray:uint32"


def test_mds_round_trip(tmp_path):
    streaming = pytest.importorskip("streaming")
    rows = make_corpus(tmp_path / "c")
    result = export_mds(str(tmp_path / "c"), str(tmp_path / "mds"), compression="zstd", size_limit=4096)
    assert result["rows"] == len(rows)
    dataset = streaming.StreamingDataset(local=str(tmp_path / "mds"), shuffle=False, batch_size=1)
    assert dataset.num_samples == len(rows)
    for i in (0, 1, len(rows) // 2, len(rows) - 1):
        sample = dataset[i]
        assert sample["input_ids"].dtype == np.uint16
        assert sample["input_ids"].tolist() == rows[i]["input_ids"].tolist()
        assert sample["word_start"].astype(bool).tolist() == rows[i]["word_start"].tolist()
    metadata = json.loads((tmp_path / "mds" / MDS_METADATA).read_text())
    assert metadata["vocab_sha256"] == "a" * 64


def test_mds_export_without_the_package_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_streaming(name, *args, **kwargs):
        if name == "streaming":
            raise ImportError("No module named 'streaming'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_streaming)
    make_corpus(tmp_path / "c", shards=1)
    with pytest.raises(RuntimeError, match="mosaicml-streaming"):
        export_mds(str(tmp_path / "c"), str(tmp_path / "mds"))

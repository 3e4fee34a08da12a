"""Acceptance build of ../shared data: CMRC2018 (simplified) + DRCD (traditional), BERT-base-Chinese vocab.

Skipped on a checkout without ../shared/data.
"""

from __future__ import annotations

import json

import opencc
import pytest
from transformers import BertTokenizerFast

from pipeline.config import load_config
from pipeline.driver import build_corpus
from tests.conftest import shared_file
from tests.contracts import check_corpus


@pytest.fixture(scope="module")
def shared_build(ray_local, tmp_path_factory, legacy_model_dir):
    inputs = [shared_file("zh-simplified/cmrc2018_wiki.jsonl"), shared_file("zh-traditional/drcd_paragraphs.jsonl")]
    vocab = shared_file("vocab/bert-base-chinese-vocab.txt")
    root = tmp_path_factory.mktemp("shared")
    config = root / "build.yaml"
    config.write_text(
        json.dumps(
            {
                "inputs": [str(p) for p in inputs],
                "output": str(root / "out"),
                "normalize": {"opencc": "t2s"},
                "segment": {"model": str(legacy_model_dir)},
                "tokenize": {"tokenizer": str(vocab), "max_seq_len": 512},
            }
        )
    )
    build_corpus(load_config(config))
    return root / "out", inputs, vocab


def test_shared_build_meets_every_contract(shared_build):
    out, inputs, vocab = shared_build
    parts = check_corpus(out, inputs, BertTokenizerFast(vocab=str(vocab)), max_seq_len=512)
    assert parts["report"]["fates"]["kept"] == 3104  # 1104 CMRC + 2000 DRCD paragraphs, no duplicates among them
    assert parts["shards"].schema.field("input_ids").type.value_type.bit_width == 16


def test_t2s_output_is_stable_under_a_second_pass(shared_build):
    out, _, _ = shared_build
    from tests.contracts import read_table

    converter = opencc.OpenCC("t2s")
    texts = read_table(out, "docs").column("text").to_pylist()
    changed = [text for text in texts if converter.convert(text) != text]
    assert not changed, f"{len(changed)} documents change under a second t2s, e.g. {changed[0][:80]!r}"

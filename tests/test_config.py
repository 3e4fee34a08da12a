"""Config loading: defaults, --set overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from pipeline.config import BuildConfig, ConfigError, load_config


def write_config(tmp_path, body: str):
    path = tmp_path / "build.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_defaults_and_overrides(tmp_path):
    path = write_config(tmp_path, "inputs: [a.jsonl]\noutput: out\ndedup:\n  minhash:\n    threshold: 0.7\n")
    cfg = load_config(path, ["tokenize.max_seq_len=128", "normalize.opencc=tw2s", "segment.num_gpus=0.5", "inputs=b.jsonl"])
    assert isinstance(cfg, BuildConfig)
    assert cfg.inputs == ("b.jsonl",)
    assert cfg.dedup.minhash.threshold == 0.7
    assert cfg.tokenize.max_seq_len == 128
    assert cfg.normalize.opencc == "tw2s"
    assert cfg.segment.num_gpus == 0.5
    assert cfg.normalize.min_chars == 20


def test_fingerprint_follows_content(tmp_path):
    path = write_config(tmp_path, "inputs: [a.jsonl]\noutput: out\n")
    base = load_config(path)
    assert base.fingerprint() == load_config(path).fingerprint()
    changed = load_config(path, ["tokenize.max_seq_len=128"])
    assert changed.fingerprint() != base.fingerprint()
    assert changed.fingerprint("segment") == base.fingerprint("segment")


@pytest.mark.parametrize(
    ("body", "overrides", "message"),
    [
        ("inputs: [a]\noutput: o\nbogus: 1\n", [], "unknown config key: bogus"),
        ("inputs: [a]\noutput: o\ndedup:\n  minhash:\n    treshold: 0.8\n", [], "unknown config key: dedup.minhash.treshold"),
        ("inputs: [a]\noutput: o\n", ["segment.modle=x"], "unknown config key: segment.modle"),
        ("inputs: [a]\noutput: o\n", ["tokenize.max_seq_len=long"], "tokenize.max_seq_len must be int"),
        ("inputs: [a]\noutput: o\n", ["normalize.opencc=x2y"], "unknown OpenCC config"),
        ("inputs: [a]\noutput: o\n", ["novalue"], "--set takes dotted.key=value"),
        ("output: o\n", [], "inputs"),
        ("inputs: [a]\noutput: o\nnormalize: 3\n", [], "normalize must be a mapping"),
        ("inputs: [a\n", [], "not valid YAML"),
    ],
)
def test_errors_name_the_key(tmp_path, body, overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(write_config(tmp_path, body), overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")

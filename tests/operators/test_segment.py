"""Segment stage: pieces and batches, fidelity to LTP, batch independence, model errors, one Ray run."""

from __future__ import annotations

import json
import time

import pytest

from operators.columns import DOCS_SCHEMA, NER, POS, TEXT, WORDS, docs_schema
from operators.segment import (
    MAX_PIECE_TOKENS,
    LtpSegmenter,
    SegmentConfig,
    SegmentOutOfMemory,
    actor_device,
    apply,
    check_config,
    length_batches,
    model_pieces,
    padded_tokens,
    piece_tokens,
    run_batches,
    split_sentences,
    stage_error,
)
from operators.segment.ltp_loading import SegmentModelError, check_model, load_ltp

# A generated run of CJK characters with no sentence end: the neural model would truncate it.
RUN_ON = "".join(chr(0x4E00 + (i * 37) % 3000) for i in range(1400))
LONG = (
    "长文档的开头。\n"
    + RUN_ON
    + "，".join(["逗号分开的短语"] * 60)
    + " ".join(["words", "without", "sentence", "ends"] * 90)
    + "。最后一句！"
)
TEXTS = [
    "今天天气很好。",
    "我爱 北京  天安门\n\n你好！",
    "  前导空格和结尾空格  ",
    "Hello world, LTP 4.2 在 2024 年发布了 3 个版本。",
    "表情😀测试\t制表符🎉结束",
    "全角ＡＢＣ１２３　空格，半角abc。",
    "零宽\u200b字符\x00和控制符",
    "第一行\r\n第二行\n\n\n第三行",
    "",
    " \n\t ",
    "？！。",
    "“引号里的句子。”他说。",
    "naïve Café [SEP] x",
    LONG,
]


TAGGED_TEXTS = ["我们在北京大学学习。小明去中国的长城 玩。", "老师很好", "上海  和\n杭州。", *TEXTS]
ALL_TASKS = ("cws", "pos", "ner")


@pytest.fixture(scope="module")
def legacy_tagger_dir(tmp_path_factory):
    from tests.conftest import CWS_TRAINING_FILE
    from tests.ltp_models import train_legacy_tagger_model

    return train_legacy_tagger_model(tmp_path_factory.mktemp("ltp-legacy-tagger"), CWS_TRAINING_FILE)


@pytest.fixture(scope="module")
def neural_tagger_dir(tmp_path_factory):
    from tests.ltp_models import build_tiny_neural_model

    return build_tiny_neural_model(tmp_path_factory.mktemp("ltp-neural-tagger"), tasks=ALL_TASKS)


@pytest.fixture(scope="module")
def legacy(legacy_model_dir) -> LtpSegmenter:
    return LtpSegmenter(SegmentConfig(model=str(legacy_model_dir)))


@pytest.fixture(scope="module")
def neural(neural_model_dir) -> LtpSegmenter:
    return LtpSegmenter(SegmentConfig(model=str(neural_model_dir), max_batch_tokens=2048))


@pytest.fixture(scope="module")
def neural_ltp(neural_model_dir):
    return load_ltp(str(neural_model_dir))


def non_space(words: list[str]) -> list[str]:
    """LTP's words cut at whitespace, which is how the stage treats whitespace."""
    return [part for word in words for part in word.split()]


def test_split_sentences_rejoins_and_keeps_closers():
    assert split_sentences("你好。“好！”他说\n\n再见") == ["你好。", "“好！”", "他说\n\n", "再见"]
    for text in TEXTS:
        assert "".join(split_sentences(text)) == text


def test_model_pieces_fit_the_model_and_cut_between_bert_words(neural_ltp):
    tokenizer = neural_ltp.tokenizer
    assert len(tokenizer(LONG, add_special_tokens=False).input_ids) > 2 * MAX_PIECE_TOKENS
    [pieces] = model_pieces([LONG], piece_tokens(tokenizer))
    assert "".join(piece.text for piece in pieces) == LONG
    assert len(pieces) > len(split_sentences(LONG))
    whole = tokenizer(LONG, add_special_tokens=False).encodings[0]
    word_starts = {
        start for k, (start, _) in enumerate(whole.offsets) if k == 0 or whole.word_ids[k] != whole.word_ids[k - 1]
    }
    position = 0
    for piece in pieces:
        assert 0 < piece.tokens <= MAX_PIECE_TOKENS
        alone = tokenizer(piece.text, add_special_tokens=False, return_offsets_mapping=True)
        assert list(piece.ids) == alone.input_ids and [tuple(span) for span in piece.offsets] == alone.offset_mapping
        assert position in word_starts
        position += len(piece.text)


def test_length_batches_sort_and_respect_the_budget():
    counts = [5, 300, 1, 40, 300, 8, 1000]
    batches = length_batches(counts, max_batch_tokens=700)
    assert sorted(i for batch in batches for i in batch) == list(range(len(counts)))
    order = [counts[i] for batch in batches for i in batch]
    assert order == sorted(order)
    for batch in batches:
        assert len(batch) == 1 or len(batch) * (max(counts[i] for i in batch) + 2) <= 700


@pytest.mark.parametrize("name", ["legacy", "neural"])
def test_words_rejoin_exactly(name, request):
    segmenter = request.getfixturevalue(name)
    for text, words in zip(TEXTS, segmenter.segment(TEXTS)):
        assert "".join(words) == text
        assert all(words)
        assert all(word.isspace() or not any(c.isspace() for c in word) for word in words)
    assert segmenter.segment([""]) == [[]]


def test_neural_words_match_ltp_on_each_piece(neural, neural_ltp):
    for text, words in zip(TEXTS, neural.segment(TEXTS)):
        expected = []
        for piece in model_pieces([text], piece_tokens(neural_ltp.tokenizer))[0]:
            expected += non_space(neural_ltp.pipeline([piece.text], tasks=["cws"]).cws[0]) if piece.tokens else []
        assert [word for word in words if not word.isspace()] == expected


def test_legacy_words_match_ltp_on_whole_text(legacy, legacy_model_dir):
    ltp = load_ltp(str(legacy_model_dir))
    for text, words in zip(TEXTS, legacy.segment(TEXTS)):
        expected = non_space(ltp.pipeline([text], tasks=["cws"]).cws[0]) if text.strip() else []
        assert [word for word in words if not word.isspace()] == expected
    threaded = LtpSegmenter(SegmentConfig(model=str(legacy_model_dir), threads_per_actor=2))
    assert threaded.segment(TEXTS) == legacy.segment(TEXTS)


@pytest.mark.parametrize("name", ["legacy", "neural"])
def test_output_independent_of_batch(name, request):
    segmenter = request.getfixturevalue(name)
    together = segmenter.segment(TEXTS)
    assert [segmenter.segment([text])[0] for text in TEXTS] == together
    assert segmenter.segment(TEXTS[::-1])[::-1] == together


@pytest.mark.parametrize("model_fixture", ["legacy_model_dir", "neural_model_dir"])
def test_user_words_join_a_made_up_word(model_fixture, request, tmp_path):
    model = str(request.getfixturevalue(model_fixture))
    text = "蔑羟犇的公园很大。"
    plain = LtpSegmenter(SegmentConfig(model=model)).segment([text])[0]
    made_up = plain[0] + plain[1]  # LTP's hook only merges words that start on one of the model's word starts
    (tmp_path / "words.txt").write_text(f"\n{made_up}\n", encoding="utf-8")
    hooked = LtpSegmenter(SegmentConfig(model=model, user_words=str(tmp_path / "words.txt"))).segment([text])[0]
    assert made_up not in plain
    assert hooked == [made_up, *plain[2:]]
    ltp = load_ltp(model)
    ltp.add_words([made_up])
    assert hooked == non_space(ltp.pipeline([text], tasks=["cws"]).cws[0])  # LTP's own hook, same words


def test_config_rejects_unusable_resources():
    bad_values = (
        {"num_actors": 0}, {"threads_per_actor": 0}, {"batch_size": 0}, {"num_gpus": -1}, {"max_batch_tokens": 9},
        {"num_actors": 3, "max_actors": 2}, {"tasks": ("pos",)}, {"tasks": ("cws", "dep")}, {"tasks": ("cws", "cws")},
    )
    for bad in bad_values:
        with pytest.raises(ValueError, match=list(bad)[-1]):
            SegmentConfig(**bad)
    assert SegmentConfig(num_actors=2, max_actors=4, tasks=("cws", "ner", "pos")).max_actors == 4


def test_config_keys_load_from_yaml(tmp_path):
    from pipeline.config import load_config

    path = tmp_path / "build.yaml"
    path.write_text("inputs: [a.jsonl]\noutput: out\nsegment:\n  tasks: [cws, pos]\n  max_actors: 4\n")
    cfg = load_config(path, ["segment.num_actors=2", "segment.tasks=[cws, pos, ner]"]).segment
    assert (cfg.num_actors, cfg.max_actors, cfg.tasks) == (2, 4, ("cws", "pos", "ner"))
    assert load_config(path, ["segment.max_actors=null"]).segment.max_actors is None


def test_device_follows_the_gpu_the_actor_holds():
    assert actor_device(1, cuda_available=True) == "cuda"
    assert actor_device(0.25, cuda_available=True) == "cuda"  # a fraction of a GPU is still that GPU
    assert actor_device(0, cuda_available=True) == "cpu"
    assert actor_device(1, cuda_available=False) == "cpu"


def test_docs_schema_adds_tag_columns_only_when_asked():
    assert docs_schema(("cws",)) == DOCS_SCHEMA
    assert DOCS_SCHEMA.names == ["doc_id", "source", "text", "words"]
    assert docs_schema(("cws", "ner", "pos")).names == [*DOCS_SCHEMA.names, POS, NER]
    assert docs_schema(("cws", "ner")).names == [*DOCS_SCHEMA.names, NER]


def ltp_tagged(ltp, text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """LTP's own (word, pos) per non-space part of its words, and its entities (label, text), on `text`."""
    out = ltp.pipeline([text], tasks=list(ALL_TASKS))
    words, pos, ner = out.cws[0], out.pos[0], out.ner[0]
    pairs = [(part, tag) for word, tag in zip(words, pos) for part in word.split()]
    return pairs, [(entity[0], entity[1].strip()) for entity in ner]


def entities(words: list[str], ner: list[str]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for word, tag in zip(words, ner):
        if tag.startswith("B-"):
            found.append((tag[2:], word))
        elif tag.startswith("I-"):
            found[-1] = (found[-1][0], found[-1][1] + word)
    return found


@pytest.mark.parametrize("model_fixture", ["legacy_tagger_dir", "neural_tagger_dir"])
def test_pos_and_ner_match_ltp(model_fixture, request):
    model = str(request.getfixturevalue(model_fixture))
    tagger = LtpSegmenter(SegmentConfig(model=model, tasks=ALL_TASKS, max_batch_tokens=2048))
    words_only = LtpSegmenter(SegmentConfig(model=model, max_batch_tokens=2048)).segment(TAGGED_TEXTS)
    ltp = load_ltp(model)
    neural = model_fixture.startswith("neural")
    for text, tagged, plain in zip(TAGGED_TEXTS, tagger.tag(TAGGED_TEXTS), words_only):
        assert tagged.words == plain  # tagging never changes the words
        assert len(tagged.pos) == len(tagged.ner) == len(tagged.words)
        assert all(tag is not None for word, tag in zip(tagged.words, tagged.pos) if word in ("。", "学习"))
        assert all(tag is None for word, tag in zip(tagged.words, tagged.pos) if word.isspace())
        expected_pairs, expected_entities = [], []
        units = [piece.text for piece in model_pieces([text], piece_tokens(ltp.tokenizer))[0] if piece.tokens] if neural else [text]
        for unit in units if text.strip() else []:
            pairs, found = ltp_tagged(ltp, unit)
            expected_pairs += pairs
            expected_entities += found
        assert [(w, p) for w, p in zip(tagged.words, tagged.pos) if p is not None] == expected_pairs
        assert [(label, name.strip()) for label, name in entities(tagged.words, tagged.ner)] == expected_entities
    assert tagger.tag(TAGGED_TEXTS[::-1])[::-1] == tagger.tag(TAGGED_TEXTS)
    assert any(tag != "O" for tagged in tagger.tag(TAGGED_TEXTS[:3]) for tag in tagged.ner)


def test_tasks_the_model_lacks_are_a_clear_error(legacy_model_dir, neural_model_dir):
    for model in (legacy_model_dir, neural_model_dir):
        cfg = SegmentConfig(model=str(model), tasks=("cws", "pos"))
        assert_one_line_error(lambda: check_config(cfg), "segment.tasks", "'pos'")
        assert_one_line_error(lambda: LtpSegmenter(cfg), "segment.tasks", "'pos'")


def test_run_batches_halves_the_budget_on_out_of_memory():
    import torch

    counts = [30, 5, 200, 60, 60, 7, 100, 400, 3]
    calls: list[list[int]] = []

    def run(groups):  # as the fast path runs them: several in flight, outputs in order
        for group in groups:
            calls.append(group)
            if padded_tokens([counts[i] for i in group]) > 700:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            yield [f"piece {i}" for i in group]

    retries = []
    results, budget = run_batches(counts, 4096, run, (torch.cuda.OutOfMemoryError,), lambda b, e: retries.append(b))
    assert results == [f"piece {i}" for i in range(len(counts))]
    assert retries and budget == retries[-1] < 4096
    assert sorted(i for group in calls if padded_tokens([counts[i] for i in group]) <= 700 for i in group) == list(
        range(len(counts))
    )

    def always(groups):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        yield

    with pytest.raises(SegmentOutOfMemory) as caught:
        run_batches([500], 4096, always, (torch.cuda.OutOfMemoryError,))
    assert "\n" not in str(caught.value) and "segment.num_gpus" in str(caught.value)


def test_neural_out_of_memory_retries_smaller_then_fails_clearly(neural_model_dir, neural):
    import torch

    segmenter = LtpSegmenter(SegmentConfig(model=str(neural_model_dir), max_batch_tokens=2048))
    real = segmenter._fast.tags
    tried = []

    def small_batches_only(batch):  # a GPU that holds two pieces at a time
        tried.append(len(batch.texts))
        if len(batch.texts) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(batch)

    segmenter._fast.tags = small_batches_only
    assert segmenter.segment(TEXTS) == neural.segment(TEXTS)
    assert segmenter.oom_retries > 0 and segmenter.max_batch_tokens < 2048
    assert max(tried) > 2 and len(tried) > segmenter.oom_retries

    def no_memory(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    segmenter._fast.tags = no_memory
    with pytest.raises(SegmentOutOfMemory) as caught:
        segmenter.segment(["一句话。"])
    assert "\n" not in str(caught.value) and "single piece" in str(caught.value)


def test_stage_error_finds_the_message_in_ray_errors():
    message = "segment.model '/m' could not be loaded: expected value at line 1 column 1"
    ray_text = f"The actor died\n  File \"x.py\"\n\x1b[36moperators.segment.ltp_loading.SegmentModelError: {message}\n"
    found = stage_error(RuntimeError(ray_text))
    assert type(found) is SegmentModelError and str(found) == message
    oom = stage_error(RuntimeError("Traceback\noperators.segment.SegmentOutOfMemory: segment: out of GPU memory"))
    assert type(oom) is SegmentOutOfMemory
    chained = RuntimeError("wrapper")
    chained.__cause__ = SegmentModelError("inner")
    assert str(stage_error(chained)) == "inner"
    assert stage_error(RuntimeError("something else")) is None


def test_unreachable_hub_fails_in_seconds(monkeypatch):
    from huggingface_hub import constants

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    started = time.perf_counter()
    assert_one_line_error(lambda: check_model("LTP/no-such-model"), "cannot reach 127.0.0.1", "download the model")
    assert time.perf_counter() - started < 10


def assert_one_line_error(call, *fragments: str) -> None:
    with pytest.raises(SegmentModelError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_model_errors(tmp_path, legacy_model_dir):
    check_model(str(legacy_model_dir))
    assert_one_line_error(lambda: check_model(str(tmp_path / "missing")), "no such directory")
    assert_one_line_error(lambda: check_model(str(tmp_path)), "no config.json")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    assert_one_line_error(lambda: check_model(str(tmp_path)), "not an LTP config")
    (tmp_path / "config.json").write_text(json.dumps({"nerual": False, "tasks": {"cws": "cws.bin"}}))
    assert_one_line_error(lambda: check_model(str(tmp_path)), "missing weights file cws.bin")
    (tmp_path / "config.json").write_text("{not json")
    assert_one_line_error(lambda: check_model(str(tmp_path)), "unreadable config.json")
    assert_one_line_error(lambda: check_model(str(tmp_path / "config.json")), "is a file")
    hub = ("download the model elsewhere", "set segment.model to that local directory")
    assert_one_line_error(lambda: check_model("LTP/no-such-model"), *hub)
    assert_one_line_error(lambda: load_ltp("LTP/no-such-model"), *hub)
    assert_one_line_error(lambda: LtpSegmenter(SegmentConfig(model=str(tmp_path / "missing"))), "no such directory")
    bad_words = SegmentConfig(model=str(legacy_model_dir), user_words=str(tmp_path / "none.txt"))
    assert_one_line_error(lambda: check_config(bad_words), "segment.user_words", "no such file")


@pytest.mark.gpu
def test_gpu_actor_runs_on_cuda_with_the_same_words(neural_model_dir, neural):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    on_gpu = LtpSegmenter(SegmentConfig(model=str(neural_model_dir), num_gpus=0.5, max_batch_tokens=2048))
    assert on_gpu.device == "cuda" and next(on_gpu._ltp.parameters()).is_cuda
    assert on_gpu.segment(TEXTS) == neural.segment(TEXTS)


def test_apply_adds_a_list_of_strings_column(ray_local, legacy_model_dir):
    import pyarrow as pa

    texts = ["", "", "今天天气很好。", "我爱 北京", "天气很好", "你好！\n再见"]  # first batch: only empty lists
    ds = ray_local.data.from_items([{TEXT: text, "doc_id": str(i)} for i, text in enumerate(texts)])
    out = apply(ds, SegmentConfig(model=str(legacy_model_dir), batch_size=2)).materialize()
    for block in ray_local.get(out.to_arrow_refs()):
        assert block.schema.field(WORDS).type == pa.list_(pa.string())
    rows = sorted(out.take_all(), key=lambda row: row["doc_id"])
    assert [row[TEXT] for row in rows] == texts
    assert ["".join(row[WORDS]) for row in rows] == texts


def test_rows_that_come_with_words_keep_them_and_only_the_others_go_to_the_model(legacy_tagger_dir, monkeypatch):
    """A segmentation cache's rows arrive with words and tags (``missing_words``): made-up ones here, which the
    model would never give, so that a row segmented again would show."""
    import pyarrow as pa

    from operators.segment.bert_words import with_bert_words

    tagger = LtpSegmenter(SegmentConfig(model=str(legacy_tagger_dir), tasks=ALL_TASKS))
    asked = []
    real_tag = tagger.tag
    monkeypatch.setattr(tagger, "tag", lambda texts: asked.append(texts) or real_tag(texts))
    lists = pa.list_(pa.string())
    texts = ["我们在北京大学学习。", "老师很好", None]
    batch = pa.table({"doc_id": ["a", "b", "c"], TEXT: texts,
                      WORDS: pa.array([["我们在", "北京大学学习。"], None, None], lists),
                      POS: pa.array([["x", "y"], None, None], lists), NER: pa.array([["O", "O"], None, None], lists)})
    out = tagger(batch)
    expected = real_tag(["老师很好"])[0]
    assert asked == [["老师很好"]]
    assert out.column_names == ["doc_id", TEXT, WORDS, POS, NER]
    assert out[WORDS].to_pylist() == [["我们在", "北京大学学习。"], expected.words, None]
    assert out[POS].to_pylist() == [["x", "y"], expected.pos, None]
    assert out[NER].to_pylist() == [["O", "O"], expected.ner, None]
    assert tagger(out) is out and len(asked) == 1  # every row has its words: nothing to do
    bert = with_bert_words(pa.table({TEXT: ["a b", "c d"], WORDS: pa.array([["a b"], None], lists)}))
    assert bert[WORDS].to_pylist() == [["a b"], ["c", " ", "d"]]


def test_apply_autoscaled_pool_writes_tag_columns(ray_local, legacy_tagger_dir, tmp_path):
    import pyarrow.parquet as pq

    from operators import write

    texts = ["我们在北京大学学习。", "", "小明去中国的长城 玩。", "老师很好"]
    ds = ray_local.data.from_items([{"doc_id": str(i), "source": "s", TEXT: t} for i, t in enumerate(texts)])
    cfg = SegmentConfig(model=str(legacy_tagger_dir), batch_size=2, num_actors=1, max_actors=2, tasks=ALL_TASKS)
    write.write_table(apply(ds, cfg), str(tmp_path), write.DOCS_DIR, docs_schema(cfg.tasks), 1)
    table = pq.read_table(tmp_path / write.DOCS_DIR).sort_by("doc_id")
    assert table.schema.names == ["doc_id", "source", "text", "words", "pos", "ner"]
    expected = LtpSegmenter(cfg).tag(texts)
    assert table.column(WORDS).to_pylist() == [tagged.words for tagged in expected]
    assert table.column(POS).to_pylist() == [tagged.pos for tagged in expected]
    assert table.column(NER).to_pylist() == [tagged.ner for tagged in expected]


def test_actor_that_cannot_load_the_model_fails_the_run_with_the_reason(ray_local, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"nerual": False, "tasks": {"cws": "cws.json"}}))
    (tmp_path / "cws.json").write_text("not a model")  # passes the driver's cheap check, fails in the actor
    ds = ray_local.data.from_items([{TEXT: "你好"}])
    started = time.perf_counter()
    with pytest.raises(Exception) as caught:
        apply(ds, SegmentConfig(model=str(tmp_path))).materialize()
    assert time.perf_counter() - started < 120
    reason = stage_error(caught.value)
    assert isinstance(reason, SegmentModelError) and "could not be loaded" in str(reason) and "\n" not in str(reason)

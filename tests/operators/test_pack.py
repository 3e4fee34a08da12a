"""Pack: no token lost or reordered, [CLS]/[SEP] placement, whole words kept together, one Ray run."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pyarrow as pa
import pytest

from operators import pack
from operators.columns import DOC_ID, INPUT_IDS, TEXT, WORD_START, WORDS
from operators.pack import FullPacker, shard_schema
from operators.tokenize import TokenizeConfig, WholeWordTokenizer, vocab_info

CLS, SEP = 1, 2


def packer(max_seq_len: int, ids: pa.DataType | None = None) -> FullPacker:
    return FullPacker(max_seq_len=max_seq_len, cls_id=CLS, sep_id=SEP, id_type=ids or pa.uint16())


def doc(ids: list[int], starts: str) -> tuple[np.ndarray, np.ndarray]:
    """A document from ids and a word-start string like "1011" (1 = word start)."""
    return np.array(ids, dtype=np.uint16), np.array([c == "1" for c in starts], dtype=bool)


def as_lists(examples) -> list[tuple[list[int], str]]:
    return [(ids.tolist(), "".join("1" if s else "0" for s in starts)) for ids, starts in examples]


def test_documents_share_examples_separated_by_sep():
    docs = [doc([10, 11, 12], "111"), doc([20, 21, 22, 23], "1111"), doc([30], "1")]
    assert as_lists(packer(8).pack(docs)) == [
        ([CLS, 10, 11, 12, SEP, 20, 21, SEP], "11111111"),
        ([CLS, 22, 23, SEP, 30, SEP], "111111"),
    ]


def test_document_ending_with_an_example_needs_no_extra_sep():
    docs = [doc([10, 11, 12, 13, 14, 15], "111111"), doc([20], "1")]
    assert as_lists(packer(8).pack(docs)) == [
        ([CLS, 10, 11, 12, 13, 14, 15, SEP], "11111111"),
        ([CLS, 20, SEP], "111"),
    ]


def test_cut_falls_before_a_word_start():
    """The word 13-14-15 does not fit: the example stops short rather than split it."""
    docs = [doc([10, 11, 12, 13, 14, 15, 16], "1011001")]
    assert as_lists(packer(7).pack(docs)) == [
        ([CLS, 10, 11, 12, SEP], "11011"),
        ([CLS, 13, 14, 15, 16, SEP], "110011"),
    ]


def test_next_document_waits_when_its_first_word_does_not_fit():
    docs = [doc([10, 11, 12], "111"), doc([20, 21, 22], "100")]
    assert as_lists(packer(7).pack(docs)) == [
        ([CLS, 10, 11, 12, SEP], "11111"),
        ([CLS, 20, 21, 22, SEP], "11001"),
    ]


def test_word_longer_than_an_example_is_cut_inside():
    docs = [doc([10, 11, 12, 13, 14, 15, 16], "1000001")]
    assert as_lists(packer(5).pack(docs)) == [
        ([CLS, 10, 11, 12, SEP], "11001"),
        ([CLS, 13, 14, 15, SEP], "10001"),
        ([CLS, 16, SEP], "111"),
    ]


def test_max_seq_len_below_three_is_refused():
    with pytest.raises(ValueError, match="at least 3"):
        packer(2)


def test_empty_documents_add_nothing():
    empty = doc([], "")
    assert packer(8).pack([]) == []
    assert packer(8).pack([empty, empty]) == []
    assert as_lists(packer(8).pack([empty, doc([10], "1"), empty, doc([20], "1"), empty])) == [
        ([CLS, 10, SEP, 20, SEP], "11111")
    ]


def random_docs(rng: np.random.Generator, n_docs: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Documents whose token ids are unique (100, 101, ...), so every token can be traced back."""
    docs, next_id = [], 100
    for _ in range(n_docs):
        length = int(rng.choice([0, 1, 2, 5, 17, 40, 90]))
        starts = rng.random(length) < rng.choice([0.05, 0.5, 0.9])
        if length:
            starts[0] = True
        docs.append((np.arange(next_id, next_id + length, dtype=np.uint16), starts))
        next_id += length
    return docs


def first_word_length(ids: np.ndarray, starts: np.ndarray) -> int:
    """Tokens of the example's first (possibly partial) word: up to the next word start or [SEP]."""
    n = 1
    while 1 + n < len(ids) - 1 and ids[1 + n] != SEP and not starts[1 + n]:
        n += 1
    return n


def check_examples(docs, examples, max_seq_len: int) -> None:
    where = {int(t): (d, p) for d, (ids, _) in enumerate(docs) for p, t in enumerate(ids)}
    last = {d: len(ids) - 1 for d, (ids, _) in enumerate(docs)}
    following = {}  # the next non-empty document after each one
    non_empty = [d for d, (ids, _) in enumerate(docs) if len(ids)]
    for a, b in pairwise(non_empty):
        following[a] = b

    for ids, starts in examples:
        assert 3 <= len(ids) <= max_seq_len and len(starts) == len(ids)
        assert ids[0] == CLS and ids[-1] == SEP and CLS not in ids[1:]
        assert starts[(ids == CLS) | (ids == SEP)].all()
        content = ids[1:-1].tolist()
        assert content[0] != SEP and content[-1] != SEP
        for a, sep, b in zip(content, content[1:], content[2:]):
            if sep == SEP:  # a separator sits exactly between one document's end and the next's start
                (da, pa_), (db, pb) = where[a], where[b]
                assert pa_ == last[da] and following[da] == db and pb == 0
        for a, b in pairwise(content):
            if SEP not in (a, b):  # otherwise neighbours are neighbours in one document
                assert where[b] == (where[a][0], where[a][1] + 1)

    kept = [(i, s) for ids, starts in examples for i, s in zip(ids[1:-1], starts[1:-1]) if i != SEP]
    assert [int(i) for i, _ in kept] == [int(t) for ids, _ in docs for t in ids]  # nothing lost, order kept
    assert [bool(s) for _, s in kept] == [bool(s) for _, starts in docs for s in starts]

    for (prev_ids, prev_starts), (ids, starts) in pairwise(examples):
        d, p = where[int(prev_ids[-2])]
        first_word = first_word_length(ids, starts)
        separator = 1 if p == last[d] else 0
        assert len(prev_ids) + separator + first_word > max_seq_len  # greedy: the next word did not fit
        if not starts[1]:  # cut inside a word only when that word filled a whole example
            assert len(prev_ids) == max_seq_len and not prev_starts[2:-1].any()


@pytest.mark.parametrize("max_seq_len", [3, 4, 5, 8, 16, 64, 512])
@pytest.mark.parametrize("seed", range(5))
def test_random_documents_pack_losslessly(max_seq_len, seed):
    docs = random_docs(np.random.default_rng(seed), n_docs=30)
    check_examples(docs, packer(max_seq_len).pack(docs), max_seq_len)


def token_table(docs, extra: bool = True) -> pa.Table:
    columns = {
        INPUT_IDS: pa.array([ids for ids, _ in docs], type=pa.list_(pa.uint16())),
        WORD_START: pa.array([starts for _, starts in docs], type=pa.list_(pa.bool_())),
    }
    if extra:
        columns = {DOC_ID: [f"d{i}" for i in range(len(docs))], **columns}
    return pa.table(columns)


def test_call_returns_exactly_the_example_columns():
    docs = random_docs(np.random.default_rng(7), n_docs=20)
    table = token_table(docs)
    sliced_chunked = pa.concat_tables([table.slice(0, 7), table.slice(7, 5), table.slice(12)])
    for batch in (table, table.slice(5, 10), sliced_chunked):
        out = packer(16)(batch)
        assert out.schema == pa.schema(
            [(INPUT_IDS, pa.list_(pa.uint16())), (WORD_START, pa.list_(pa.bool_()))]
        )
        examples = [
            (np.array(ids), np.array(starts))
            for ids, starts in zip(out[INPUT_IDS].to_pylist(), out[WORD_START].to_pylist())
        ]
        check_examples(docs[5:15] if batch.num_rows == 10 else docs, examples, 16)
    assert packer(16)(table.slice(0, 0)).num_rows == 0


def test_large_vocab_gives_uint32():
    out = packer(8, pa.uint32())(token_table([doc([10, 11], "11")], extra=False))
    assert out.schema.field(INPUT_IDS).type == pa.list_(pa.uint32())
    assert out[INPUT_IDS].to_pylist() == [[CLS, 10, 11, SEP]]


def test_shard_schema_names_what_made_the_examples():
    schema = shard_schema("hfl/chinese-roberta-wwm-ext", "ab" * 32, 21128, "LTP/small", 512)
    assert schema.field(INPUT_IDS).type == pa.list_(pa.uint16())
    assert schema.field(WORD_START).type == pa.list_(pa.bool_())
    assert schema.metadata == {
        b"tokenizer": b"hfl/chinese-roberta-wwm-ext",
        b"vocab_sha256": b"ab" * 32,
        b"vocab_size": b"21128",
        b"segment_model": b"LTP/small",
        b"max_seq_len": b"512",
        b"packing": b"full",
    }
    assert shard_schema("t", "h", 70000, "m", 128).field(INPUT_IDS).type == pa.list_(pa.uint32())


def test_apply_on_ray(ray_local, vocab_path):
    """Token rows in, typed example rows out; every batch of documents is packed on its own."""
    import ray.data

    text, words = (
        "我爱北京天安门。使用tokenizer进行分词",
        ["我", "爱", "北京", "天安门", "。", "使用", "tokenizer", "进行", "分词"],
    )
    cfg = TokenizeConfig(tokenizer=str(vocab_path), max_seq_len=16, batch_size=4)
    docs = pa.table({TEXT: [text * (i % 3) for i in range(10)], WORDS: [words * (i % 3) for i in range(10)]})
    tokens = WholeWordTokenizer(cfg)(docs)
    vocab = vocab_info(cfg.tokenizer)
    ds = pack.apply(ray.data.from_arrow(tokens), cfg, vocab).materialize()
    assert ds.schema().base_schema == pa.schema(
        [(INPUT_IDS, pa.list_(pa.uint16())), (WORD_START, pa.list_(pa.bool_()))]
    )
    core = FullPacker(cfg.max_seq_len, vocab.cls_id, vocab.sep_id, vocab.id_type)
    batches = [tokens.slice(first, cfg.batch_size) for first in range(0, tokens.num_rows, cfg.batch_size)]
    expected = [row for batch in batches for row in core(batch).to_pylist()]
    got = [{name: list(value) for name, value in row.items()} for row in ds.take_all()]
    assert len(expected) > len(batches)
    assert sorted(got, key=as_pair) == sorted(expected, key=as_pair)


def as_pair(row: dict) -> tuple[list[int], list[bool]]:
    return row[INPUT_IDS], row[WORD_START]

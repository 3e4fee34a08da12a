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
    """Token rows in, typed example rows out; every batch of documents is packed on its own, in groups
    of ``batch_size`` consecutive documents whatever blocks the tokens come in."""
    import ray.data

    text, words = (
        "我爱北京天安门。使用tokenizer进行分词",
        ["我", "爱", "北京", "天安门", "。", "使用", "tokenizer", "进行", "分词"],
    )
    cfg = TokenizeConfig(tokenizer=str(vocab_path), max_seq_len=16, batch_size=4)
    docs = pa.table({TEXT: [text * (i % 3) for i in range(10)], WORDS: [words * (i % 3) for i in range(10)]})
    tokens = WholeWordTokenizer(cfg)(docs)
    vocab = vocab_info(cfg.tokenizer)
    blocks = [tokens.slice(first, 3) for first in range(0, tokens.num_rows, 3)]  # not aligned with the groups
    ds = pack.apply(ray.data.from_arrow(blocks), cfg, vocab).materialize()
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


# --- packing: doc -------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from operators.pack import CHINESE_REF, DocPacker, TruncatingPacker, chinese_ref, shard_schema_for  # noqa: E402


def doc_packer(max_seq_len: int) -> DocPacker:
    return DocPacker(max_seq_len=max_seq_len, cls_id=CLS, sep_id=SEP, id_type=pa.uint16())


def sdoc(ids: list[int], starts: str, sentences: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A document with word starts and sentence starts given as "1"/"0" strings."""
    d_ids, d_starts = doc(ids, starts)
    return d_ids, d_starts, np.array([c == "1" for c in sentences], dtype=bool)


def test_doc_packing_gives_each_document_its_own_example():
    docs = [sdoc([10, 11], "11", "00"), sdoc([], "", ""), sdoc([20], "1", "0")]
    assert as_lists(doc_packer(8).pack(docs)) == [([CLS, 10, 11, SEP], "1111"), ([CLS, 20, SEP], "111")]


def test_doc_packing_cuts_long_documents_at_the_last_sentence_start_that_fits():
    # sentences: [10 11 12] [13 14] [15 16 17]; room for 5 tokens
    docs = [sdoc([10, 11, 12, 13, 14, 15, 16, 17], "11111111", "00010100")]
    assert [ids for ids, _ in as_lists(doc_packer(7).pack(docs))] == [
        [CLS, 10, 11, 12, 13, 14, SEP],
        [CLS, 15, 16, 17, SEP],
    ]


def test_doc_packing_falls_back_to_word_starts_then_to_a_cut_inside_a_word():
    # one sentence longer than an example: cut before the last word start that fits
    docs = [sdoc([10, 11, 12, 13, 14, 15], "101001", "000000")]
    assert [ids for ids, _ in as_lists(doc_packer(6).pack(docs))] == [[CLS, 10, 11, SEP], [CLS, 12, 13, 14, 15, SEP]]
    # one word longer than an example: cut inside it
    docs = [sdoc([10, 11, 12, 13, 14], "10000", "00000")]
    assert as_lists(doc_packer(5).pack(docs)) == [([CLS, 10, 11, 12, SEP], "11001"), ([CLS, 13, 14, SEP], "1001")]


@st.composite
def documents(draw, sentences: bool = True):
    """Documents with unique token ids (so every token can be traced), word and sentence starts."""
    docs, next_id = [], 100
    for _ in range(draw(st.integers(0, 8))):
        length = draw(st.integers(0, 60))
        starts = np.array(draw(st.lists(st.booleans(), min_size=length, max_size=length)), dtype=bool)
        if length:
            starts[0] = True
        marks = np.array(draw(st.lists(st.booleans(), min_size=length, max_size=length)), dtype=bool) & starts
        if length:
            marks[0] = False
        ids = np.arange(next_id, next_id + length, dtype=np.uint16)
        docs.append((ids, starts, marks) if sentences else (ids, starts))
        next_id += length
    return docs


@settings(max_examples=200, deadline=None)
@given(docs=documents(), max_seq_len=st.integers(3, 40))
def test_doc_packing_loses_no_token_and_prefers_sentence_cuts(docs, max_seq_len):
    examples = doc_packer(max_seq_len).pack(docs)
    body = max_seq_len - 2
    kept = [int(t) for ids, _ in examples for t in ids[1:-1]]
    assert kept == [int(t) for ids, _, _ in docs for t in ids]  # nothing lost, nothing reordered, no [SEP] inside
    assert [bool(s) for _, starts in examples for s in starts[1:-1]] == [bool(s) for _, st_, _ in docs for s in st_]
    where = {int(t): (d, p) for d, (ids, _, _) in enumerate(docs) for p, t in enumerate(ids)}
    for ids, starts in examples:
        assert 3 <= len(ids) <= max_seq_len and ids[0] == CLS and ids[-1] == SEP and starts[0] and starts[-1]
        first, last = where[int(ids[1])], where[int(ids[-2])]
        assert first[0] == last[0]  # one document per example
        d_ids, d_starts, d_sentences = docs[first[0]]
        end = last[1] + 1
        if end < len(d_ids):  # the document goes on: the cut is the best one available
            window = slice(first[1] + 1, first[1] + body + 1)
            if d_sentences[window].any():
                assert d_sentences[end] and not d_sentences[end + 1 : first[1] + body + 1].any()
            elif d_starts[window].any():
                assert d_starts[end] and not d_starts[end + 1 : first[1] + body + 1].any()
            else:
                assert end - first[1] == body


@settings(max_examples=200, deadline=None)
@given(docs=documents(sentences=False), max_seq_len=st.integers(3, 40))
def test_full_packing_loses_no_token(docs, max_seq_len):
    check_examples(docs, packer(max_seq_len).pack(docs), max_seq_len)


# --- packing: none and chinese_ref ----------------------------------------------------------------


def test_none_packing_truncates_each_document(vocab_path):
    vocab = vocab_info(str(vocab_path))
    core = TruncatingPacker(6, vocab)
    ids = np.arange(200, 210, dtype=np.uint16)
    starts = np.ones(10, dtype=bool)
    examples, refs = core.pack([(ids, starts, []), (ids[:0], starts[:0], []), (ids[:2], starts[:2], [])])
    assert [e.tolist() for e, _ in examples] == [
        [vocab.cls_id, 200, 201, 202, 203, vocab.sep_id],
        [vocab.cls_id, 200, 201, vocab.sep_id],
    ]
    assert len(refs) == 2


@settings(max_examples=100, deadline=None)
@given(docs=documents(sentences=False), max_seq_len=st.integers(3, 40))
def test_none_packing_drops_only_the_documented_remainder(docs, max_seq_len):
    from operators.tokenize import VocabInfo

    vocab = VocabInfo(spec="unused", sha256="", size=1000, cls_id=CLS, sep_id=SEP)
    examples, refs = TruncatingPacker(max_seq_len, vocab, tokens=["x"] * 1000).pack(
        (ids, starts, []) for ids, starts in docs
    )
    non_empty = [(ids, starts) for ids, starts in docs if len(ids)]
    assert len(examples) == len(refs) == len(non_empty)
    for (ids, starts), (e_ids, e_starts) in zip(non_empty, examples):
        assert e_ids.tolist() == [CLS, *ids[: max_seq_len - 2].tolist(), SEP]
        assert e_starts.tolist() == [True, *starts[: max_seq_len - 2].tolist(), True]


def test_chinese_ref_by_hand():
    tokens = ["[CLS]", "我", "爱", "北", "京", "天", "安", "门", "[SEP]"]
    assert chinese_ref(tokens, ["我", "爱", "北京", "天安门"]) == [4, 6, 7]
    # the script re-matches the document's word set, longest first, wherever it occurs
    tokens = ["[CLS]", "北", "京", "大", "学", "[SEP]"]
    assert chinese_ref(tokens, ["北京", "大学", "北京大学"]) == [2, 3, 4]
    # words with non-Chinese characters are not Chinese words; ## pieces are never Chinese here
    assert chinese_ref(["[CLS]", "2024", "年", "token", "##izer", "[SEP]"], ["2024年", "tokenizer"]) == []


CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
              (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]


def script_chinese_ref(tokenizer, text: str, words: list[str], max_seq_len: int) -> list[int]:
    """run_chinese_ref.py's definition, restated: the BERT tokenizer truncates the text itself;
    all-Chinese multi-character words are matched greedily, longest first, on the tokens;
    the Chinese single-character tokens inside a match (after its first) are listed."""
    def chinese(s: str) -> bool:
        return all(any(a <= ord(c) <= b for a, b in CJK_RANGES) for c in s)

    encoded = tokenizer(text, truncation=True, max_length=max_seq_len)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    lexicon = {w for w in words if len(w) > 1 and chinese(w)}
    inside = [t[:2] == "##" for t in tokens]
    i = 0
    while i < len(tokens):
        width = 1
        if chinese(tokens[i]):
            for j in range(len(tokens), i + 1, -1):
                if "".join(tokens[i:j]) in lexicon:
                    width = j - i
                    break
        for k in range(i + 1, i + width):
            inside[k] = True
        i += width
    bare = [t[2:] if t[:2] == "##" else t for t in tokens]
    return [k for k in range(len(tokens)) if inside[k] and len(bare[k]) == 1 and chinese(bare[k])]


WORD_CHARS = "北京天安门大学中国人我爱你好的了"
OTHER_WORDS = ["。", "，", "2024", "token", "bert", " ", "😀", "AB"]


@st.composite
def segmented_texts(draw):
    words = draw(
        st.lists(
            st.one_of(
                st.text(alphabet=WORD_CHARS, min_size=1, max_size=4),
                st.sampled_from(OTHER_WORDS),
                st.text(alphabet=WORD_CHARS, min_size=1, max_size=2).map(lambda w: w + "😀"),
            ),
            min_size=1,
            max_size=30,
        )
    )
    return "".join(words), words


@pytest.fixture(scope="module")
def none_packing(vocab_path):
    from operators.tokenize import load_tokenizer

    tokenizer = load_tokenizer(str(vocab_path))
    core = WholeWordTokenizer(TokenizeConfig(tokenizer=str(vocab_path), packing="none"))
    return tokenizer, core, vocab_info(str(vocab_path))


@settings(max_examples=300, deadline=None)
@given(case=segmented_texts(), max_seq_len=st.integers(3, 48))
def test_chinese_ref_matches_the_research_script(none_packing, case, max_seq_len):
    tokenizer, core, vocab = none_packing
    text, words = case
    [(ids, starts)] = core.encode([text], [words])
    examples, refs = TruncatingPacker(max_seq_len, vocab).pack([(ids, starts, words)])
    if not len(ids):
        assert examples == []
        return
    [(example_ids, _)] = examples
    assert example_ids.tolist() == tokenizer(text, truncation=True, max_length=max_seq_len)["input_ids"]
    assert refs == [script_chinese_ref(tokenizer, text, words, max_seq_len)]


def test_none_packing_table_has_chinese_ref(none_packing):
    _, core, vocab = none_packing
    text, words = "我爱北京天安门", ["我", "爱", "北京", "天安门"]
    out = TruncatingPacker(16, vocab)(core(pa.table({TEXT: [text, ""], WORDS: [words, []]})))
    assert out.schema == pa.schema(
        [(INPUT_IDS, pa.list_(pa.uint16())), (WORD_START, pa.list_(pa.bool_())), (CHINESE_REF, pa.list_(pa.int32()))]
    )
    assert out[CHINESE_REF].to_pylist() == [[4, 6, 7]]


def test_shard_schema_for_records_packing_and_specials(vocab_path):
    import json

    vocab = vocab_info(str(vocab_path))
    schema = shard_schema_for(vocab, "LTP/small", TokenizeConfig(tokenizer=str(vocab_path), packing="none"))
    assert schema.metadata[b"packing"] == b"none" and schema.names == [INPUT_IDS, WORD_START, CHINESE_REF]
    assert json.loads(schema.metadata[b"special_ids"])["[MASK]"] == dict(vocab.special_ids)["[MASK]"]

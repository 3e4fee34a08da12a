"""Dedup stage: order keys and per-partition steps (pure), then the whole stage on a tiny corpus (Ray),
through both executors: the graph in one task and the distributed shuffles."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray.data

from operators import dedup
from operators.columns import DETAIL, DOC_ID, EXACT_DUP, FATE, FINGERPRINT, KEPT, NEAR_DUP, RECORD, SOURCE, TEXT
from operators.dedup import rules as dedup_rules
from operators.dedup.minhash import MinHashConfig, MinHashSigner, estimated_jaccard
from operators.dedup.rules import (
    AUDIT_SCHEMA,
    BUCKETS,
    CONTENT,
    JACCARD,
    KEEPER,
    NODE,
    OUTPUT_SCHEMA,
    SKETCH,
    DedupConfig,
    DedupKeyer,
    attach_sketches,
    audit_rows,
    band_rows,
    duplicate_rows,
    keep_first,
    lookup_requests,
    lookup_table,
    order_keys,
    pair_jaccard,
    split_order_keys,
)
from operators.normalize import fingerprint

TOWN = (
    "江南的小镇总是被河水环绕，清晨的薄雾从石桥下缓缓升起，早起的船夫撑着竹篙穿过狭窄的水巷。沿河的老屋大"
    "多是白墙黑瓦，木窗上雕着花鸟和山水，屋檐下挂着一串串红灯笼。街口的茶馆天不亮就开门了，老人们坐在八仙"
    "桌旁喝茶听评书，谈论着今年的收成和城里的新闻。到了中午，游客渐渐多了起来，他们在小巷里寻找当地的点心"
    "，桂花糕、青团和酒酿圆子都是最受欢迎的味道。傍晚时分，夕阳把河面染成金色，孩子们在岸边追逐嬉戏，母亲"
    "们在埠头上洗菜淘米，炊烟从各家的屋顶升起，整个小镇又回到了安静而悠闲的节奏之中。"
)
LIBRARY = (
    "图书馆的三楼是整座建筑里最安静的地方，高大的书架从地面一直延伸到天花板，上面整齐地摆放着历史、哲学和"
    "自然科学的书籍。每天下午都有许多学生来这里自习，他们有的在准备考试，有的在写论文，还有的只是想找一个"
    "不被打扰的角落读一本小说。靠窗的位置最受欢迎，阳光透过玻璃洒在桌面上，翻书的声音和远处的鸟鸣交织在一"
    "起。管理员是一位头发花白的老先生，他记得几乎每一本书的位置，也乐意帮助初来的读者查找资料。闭馆之前，"
    "他总会沿着书架走一圈，把读者随手放下的书一本本送回原处，然后关上灯，锁好大门，慢慢地走回家去。"
)
SCIENCE = (
    "人工智能技术在过去十年里取得了长足的进步，语音识别、机器翻译和图像理解等任务的准确率都有了显著提高。"
    "研究人员通过构建更大规模的数据集和更深层的神经网络模型，让计算机能够处理越来越复杂的问题。然而，这些"
    "模型往往需要大量的计算资源和能源，训练一次可能要花费数周时间和数百万元的成本。与此同时，数据隐私、算"
    "法偏见和模型可解释性等问题也引起了社会各界的广泛关注。如何在推动技术创新的同时保障公众利益，成为政策"
    "制定者和科技企业必须共同面对的挑战。"
)


def edit(text: str, positions: list[int], char: str = "龘") -> str:
    chars = list(text)
    for position in positions:
        chars[position] = char
    return "".join(chars)


TOWN_EDITED = edit(TOWN, [50, 110], "某")  # two characters changed
_STEP = len(LIBRARY) // 10
CHAIN_B = edit(LIBRARY, [5 + i * _STEP for i in range(5)])  # five edits in the first half: Jaccard 0.80
CHAIN_C = edit(CHAIN_B, [len(LIBRARY) // 2 + 5 + i * _STEP for i in range(5)])  # five more in the second: 0.63 to LIBRARY

# (source, record, text); rows deliberately not in (source, record) order
CORPUS = [
    ("a", 7, CHAIN_B),
    ("c", 0, TOWN_EDITED),  # exact copy of a near duplicate
    ("b", 0, TOWN),
    ("a", 5, TOWN),
    ("b", 3, LIBRARY),
    ("a", 1, TOWN_EDITED),
    ("a", 2, CHAIN_C),
    ("a", 3, SCIENCE),
    ("b", 1, "你好。"),  # fingerprint shorter than a shingle, equal to a-4's
    ("a", 4, "你好！"),
    ("a", 6, "！！！"),  # empty fingerprints: never near duplicates
    ("b", 2, "。。。"),
    ("a", 0, TOWN),
]
EXPECTED = {
    "a-5": (EXACT_DUP, "a-0"),
    "b-0": (EXACT_DUP, "a-0"),
    "a-1": (NEAR_DUP, "a-0"),
    "c-0": (EXACT_DUP, "a-0"),
    "b-3": (NEAR_DUP, "a-2"),
    "a-7": (NEAR_DUP, "a-2"),
    "b-1": (NEAR_DUP, "a-4"),
}


def documents(rows: list[tuple[str, int, str]]) -> list[dict]:
    return [
        {DOC_ID: f"{s}-{r}", SOURCE: s, RECORD: r, TEXT: text, FINGERPRINT: fingerprint(text)} for s, r, text in rows
    ]


def by_doc_id(ds) -> dict[str, tuple[str, str]]:
    rows = ds.take_all()
    found = {row[DOC_ID]: (row[FATE], row[DETAIL]) for row in rows}
    assert len(found) == len(rows), "a duplicate appears more than once"
    return found


# --- pure -------------------------------------------------------------------------------------


def test_order_keys_sort_like_source_then_record():
    pairs = [("a", 10), ("a", 9), ("ab", 0), ("a b", 3), ("中文", 1), ("", 5), ("b", 2**62), ("b", 0)]
    keys = order_keys(pa.array([s for s, _ in pairs]), pa.array([r for _, r in pairs], pa.int64()), pa.array(["x"] * 8))
    assert [pairs[i] for i in sorted(range(8), key=lambda i: keys[i].as_py())] == sorted(pairs)


def test_order_keys_give_the_document_back():
    source, record, doc_id = pa.array(["新闻", "a"]), pa.array([3, 0], pa.int64()), pa.array(["id\x00odd", "x"])
    parts = split_order_keys(order_keys(source, record, doc_id))
    assert [p.to_pylist() for p in parts] == [source.to_pylist(), record.to_pylist(), doc_id.to_pylist()]


@pytest.mark.parametrize("source,record", [("a\x00b", 1), ("a", -1)])
def test_order_keys_reject_what_would_break_the_order(source, record):
    with pytest.raises(ValueError):
        order_keys(pa.array([source]), pa.array([record], pa.int64()), pa.array(["x"]))


def test_keyer_hashes_text_and_buckets_fingerprints():
    batch = pa.Table.from_pylist(documents([("a", 0, TOWN), ("a", 1, TOWN), ("a", 2, "！！！")]))
    keyed = DedupKeyer(DedupConfig())(batch)
    assert keyed.column_names == [NODE, CONTENT, BUCKETS, SKETCH]
    content, buckets = keyed[CONTENT].to_pylist(), keyed[BUCKETS].to_pylist()
    assert content[0] == content[1] != content[2]
    assert len(buckets[0]) == MinHashConfig().band_count and buckets[2] == []
    assert keyed.schema.field(SKETCH).type == pa.binary(2 * MinHashConfig().num_perm)
    assert keyed[SKETCH][0] == keyed[SKETCH][1]
    unsigned = DedupKeyer(DedupConfig(minhash=MinHashConfig(enabled=False)))(batch)
    assert unsigned.column_names == [NODE, CONTENT, BUCKETS] and unsigned[BUCKETS].to_pylist() == [[], [], []]


def test_signed_rows_carry_their_keys_and_marked_rows_none():
    rows = documents([("a", 0, TOWN), ("a", 1, "短"), ("a", 2, LIBRARY)])
    rows[1][FATE] = "filtered"
    batch = pa.Table.from_pylist([{**row, FATE: row.get(FATE)} for row in rows])
    keyer = DedupKeyer(DedupConfig())
    signed = dedup.signed(batch, keyer)
    assert signed.column_names == batch.column_names + [NODE, CONTENT, BUCKETS, SKETCH]
    assert [part[1].as_py() for part in split_order_keys(signed[NODE])] == ["a", 1, "a-1"]
    assert signed[CONTENT][1].as_py() is None and signed[SKETCH][1].as_py() is None
    keys = dedup.key_rows(signed, keyer(batch).column_names)
    assert keys.column_names == [NODE, CONTENT, BUCKETS, SKETCH, FATE, DETAIL]
    assert keys.filter(pc.is_null(keys[FATE])).drop_columns([FATE, DETAIL]).equals(keyer(batch.take([0, 2])))
    assert keys[FATE].to_pylist() == [None, "filtered", None]


def test_keep_first_takes_the_smallest_node_per_key():
    partition = pa.table({"k": [1, 2, 1, 1], NODE: ["c", "z", "a", "b"]})
    kept = keep_first(partition, "k")
    assert dict(zip(kept[NODE].to_pylist(), kept[KEEPER].to_pylist())) == {"c": "a", "z": "z", "a": "a", "b": "a"}


def test_band_rows_one_per_band_none_without_buckets():
    rows = band_rows(pa.table({NODE: ["x", "y", "z"], BUCKETS: pa.array([[1, 2], [], [3]], pa.list_(pa.int64()))}))
    assert list(zip(rows["bucket"].to_pylist(), rows[NODE].to_pylist())) == [(1, "x"), (2, "x"), (3, "z")]


def test_a_giant_bucket_gives_one_star_edge_per_member():
    """A bucket over ``all_pairs_max`` documents gives n - 1 edges, vectorized: linear, never all pairs."""
    n = 200_000
    nodes = pa.array([f"k{i:07d}" for i in reversed(range(n))])
    partition = pa.table({"bucket": pa.array([7] * n, pa.int64()), NODE: nodes})
    edges = dedup.bucket_pairs(partition, all_pairs_max=32)
    assert edges.num_rows == n - 1
    assert set(edges[KEEPER].to_pylist()) == {"k0000000"}


def test_small_buckets_give_all_their_pairs_each_pointing_to_the_earlier_document():
    rows = [(1, "c"), (2, "q"), (1, "a"), (3, "x"), (1, "b"), (2, "p"), (4, "m"), (4, "n"), (4, "o")]
    partition = pa.table({"bucket": pa.array([b for b, _ in rows], pa.int64()), NODE: [n for _, n in rows]})
    pairs = dedup.bucket_pairs(partition, all_pairs_max=3)
    found = set(zip(pairs[NODE].to_pylist(), pairs[KEEPER].to_pylist()))
    assert found == {("b", "a"), ("c", "a"), ("c", "b"), ("q", "p"), ("n", "m"), ("o", "m"), ("o", "n")}
    stars = dedup.bucket_pairs(partition, all_pairs_max=2)  # buckets 1 and 4 are over the limit now
    assert set(zip(stars[NODE].to_pylist(), stars[KEEPER].to_pylist())) == {
        ("b", "a"), ("c", "a"), ("q", "p"), ("n", "m"), ("o", "m")
    }


def test_bucket_pairs_orient_by_source_and_record_whatever_the_refresh_rank():
    """A kept document's node carries the rank prefix; its pairs still point as a full build's do."""
    partition = pa.table({"bucket": pa.array([5, 5], pa.int64()), NODE: [dedup_rules.RANK_KEPT + "b", "a"]})
    pairs = dedup.bucket_pairs(partition, all_pairs_max=32)
    assert list(zip(pairs[NODE].to_pylist(), pairs[KEEPER].to_pylist())) == [(dedup_rules.RANK_KEPT + "b", "a")]
    assert dedup.bucket_pairs(partition.slice(0, 0), all_pairs_max=32).num_rows == 0


def test_partitions_bound_memory_and_use_every_cpu_once_there_is_work():
    cfg = DedupConfig()
    assert dedup.partition_count(100, cfg, cpus=2) == 1  # a tiny corpus: one partition, no idle aggregators
    assert dedup.partition_count(50_000, cfg, cpus=2) == 2  # a 2-core laptop uses both
    assert dedup.partition_count(5_000_000, cfg, cpus=2) == 77  # partition_rows (65,536) bounds each task
    assert dedup.partition_count(100, DedupConfig(min_partitions=3), cpus=2) == 3


def test_duplicate_rows_have_the_fates_schema():
    keys = order_keys(pa.array(["s", "s"]), pa.array([4, 1], pa.int64()), pa.array(["dup", "kept"]))
    rows = duplicate_rows(dedup.with_fate(pa.table({NODE: keys[:1], KEEPER: keys[1:]}), NEAR_DUP))
    assert rows.schema == OUTPUT_SCHEMA
    assert rows.to_pylist() == [{SOURCE: "s", RECORD: 4, DOC_ID: "dup", FATE: NEAR_DUP, DETAIL: "kept"}]


def _sketched(rows: list[tuple[str, int, str]]) -> pa.Table:
    return DedupKeyer(DedupConfig())(pa.Table.from_pylist(documents(rows))).select([NODE, SKETCH])


def test_sketch_lookup_estimates_the_jaccard_of_each_pair_once():
    """The two shuffles of the check, run by hand: requests meet the sketch table, then the two ends meet."""
    table = _sketched([("a", 0, TOWN), ("a", 1, TOWN_EDITED), ("a", 2, LIBRARY)])
    town, edited, library = table[NODE].to_pylist()
    pairs = pa.table({"u": [edited, edited, library], "v": [town, town, town]})  # one pair proposed twice
    sketch = table.schema.field(SKETCH).type
    answered = attach_sketches(pa.concat_tables([lookup_requests(pairs, sketch), lookup_table(table)]))
    assert answered.num_rows == 4  # two distinct pairs, two ends each
    scored = {(r["u"], r["v"]): r[JACCARD] for r in pair_jaccard(answered).to_pylist()}
    assert set(scored) == {(edited, town), (library, town)}
    assert scored[(edited, town)] > 0.8 > 0.2 > scored[(library, town)]


def test_audit_rows_one_per_member_and_one_per_keeper():
    keys = order_keys(pa.array(["s"] * 4), pa.array([0, 1, 2, 3], pa.int64()), pa.array(["k", "d1", "d2", "x"]))
    partition = pa.table(
        {
            NODE: keys[1:3],
            KEEPER: pa.array([keys[0].as_py()] * 2),
            FATE: [EXACT_DUP, NEAR_DUP],
            JACCARD: pa.array([1.0, 0.9]),
        }
    )
    rows = audit_rows(partition)
    assert rows.schema == AUDIT_SCHEMA
    listed = [(r[DOC_ID], r[FATE], r["size"], r["kept_doc_id"], r[JACCARD]) for r in rows.to_pylist()]
    assert listed == [("k", KEPT, 3, "k", 1.0), ("d1", EXACT_DUP, 3, "k", 1.0), ("d2", NEAR_DUP, 3, "k", 0.9)]
    assert len(set(rows["cluster"].to_pylist())) == 1


def test_the_chain_is_a_chain():
    """A~B and B~C share an LSH bucket and pass the check, A and C do neither: only components join A and C."""
    cfg = MinHashConfig()
    signer = MinHashSigner(cfg)
    fingerprints = [fingerprint(t) for t in (LIBRARY, CHAIN_B, CHAIN_C)]
    signatures = signer.signatures(fingerprints)
    a, b, c = signer.buckets_of(fingerprints, signatures).to_pylist()
    assert set(a) & set(b) and set(b) & set(c) and not set(a) & set(c)
    estimate = estimated_jaccard(signatures[[0, 1, 0]], signatures[[1, 2, 2]])
    assert estimate[0] >= cfg.verify_cut and estimate[1] >= cfg.verify_cut > estimate[2]


# --- Ray --------------------------------------------------------------------------------------


PATHS = {"local": DedupConfig(), "distributed": DedupConfig(local_max_docs=0)}


@pytest.fixture(scope="module", params=list(PATHS))
def output(request, ray_local) -> dedup.DedupOutput:
    return dedup.apply(ray.data.from_items(documents(CORPUS)), PATHS[request.param])


@pytest.fixture(scope="module")
def found(output) -> dict[str, tuple[str, str]]:
    assert output.duplicates.schema().names == OUTPUT_SCHEMA.names
    return by_doc_id(output.duplicates)


def test_exact_duplicates_point_to_the_first_copy(found):
    assert found["a-5"] == found["b-0"] == (EXACT_DUP, "a-0")


def test_character_edits_are_near_duplicates(found):
    assert found["a-1"] == (NEAR_DUP, "a-0")


def test_exact_copy_of_a_near_duplicate_points_to_the_kept_document(found):
    assert found["c-0"] == (EXACT_DUP, "a-0")


def test_a_chain_is_one_component_kept_by_its_first_document(found):
    assert found["b-3"] == found["a-7"] == (NEAR_DUP, "a-2")


def test_short_and_empty_fingerprints(found):
    assert found["b-1"] == (NEAR_DUP, "a-4")
    assert "a-6" not in found and "b-2" not in found


def test_only_duplicates_and_never_a_keeper(found):
    assert found == EXPECTED
    assert not {detail for _, detail in found.values()} & set(found)


def test_the_audit_lists_every_cluster_member_with_its_keeper(output, found):
    rows = output.audit.take_all()
    assert output.audit.schema().names == AUDIT_SCHEMA.names
    members = {row[DOC_ID]: row for row in rows}
    assert len(members) == len(rows)
    assert {d: (r[FATE], r["kept_doc_id"]) for d, r in members.items() if r[FATE] != KEPT} == found
    assert {d for d, r in members.items() if r[FATE] == KEPT} == {"a-0", "a-2", "a-4"}
    sizes = {r["kept_doc_id"]: r["size"] for r in rows}
    assert sizes == {"a-0": 5, "a-2": 3, "a-4": 2}
    assert len({r["cluster"] for r in rows}) == 3
    assert members["a-5"][JACCARD] == members["a-0"][JACCARD] == 1.0
    assert 0.8 < members["a-1"][JACCARD] < 1.0  # two characters changed
    assert 0.5 < members["b-3"][JACCARD] < members["a-7"][JACCARD] < 1.0  # the far end of the chain


def test_keepers_do_not_depend_on_row_order_or_partitions(found, ray_local):
    cfg = DedupConfig(partition_rows=50, batch_size=4, min_partitions=3, local_max_docs=0)  # 3-5 partitions, many blocks
    shuffled = ray.data.from_items(documents(CORPUS[::-1]), override_num_blocks=3)
    assert by_doc_id(dedup.apply(shuffled, cfg).duplicates) == found


@pytest.mark.parametrize("local_max_docs", [DedupConfig().local_max_docs, 0])
def test_stages_can_be_turned_off(ray_local, local_max_docs):
    rows = documents([("a", 0, TOWN), ("a", 1, TOWN), ("a", 2, TOWN_EDITED)])
    exact = DedupConfig(minhash=MinHashConfig(enabled=False), local_max_docs=local_max_docs)
    exact_only = dedup.apply(ray.data.from_items(rows), exact)
    assert by_doc_id(exact_only.duplicates) == {"a-1": (EXACT_DUP, "a-0")}
    assert [(r[DOC_ID], r[JACCARD]) for r in exact_only.audit.take_all()] == [("a-0", None), ("a-1", None)]
    off = DedupConfig(exact=False, minhash=MinHashConfig(enabled=False), local_max_docs=local_max_docs)
    nothing = dedup.apply(ray.data.from_items(rows), off)
    assert nothing.duplicates.count() == 0 and nothing.duplicates.schema().names == OUTPUT_SCHEMA.names
    assert nothing.audit.count() == 0 and nothing.audit.schema().names == AUDIT_SCHEMA.names

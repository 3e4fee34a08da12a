"""End-to-end benchmark (issue #10): the pipeline against the sequential script a user would otherwise write.

    python bench/e2e.py [--sizes 1 4 16] [--cpus N] [--keep DIR] [--english] [--set KEY=VALUE ...] [--running-ray]

Input: ../shared/data's CMRC2018 + C3 (simplified) and DRCD (traditional) paragraphs when present,
else the bundled sample's JSONL files. Legacy LTP model trained here on the SIGHAN PKU gold file
when present, saved in the binary format LTP's released legacy models use (else the bundled tiny
model); the BERT-base-Chinese vocab when present (else the bundled vocab). Sizes above 1x append, to
each input file, ``size - 1`` variants of each of its records (``grow``): near duplicates made by
``tests.neardup.Editor`` (character noise, dropped or added sentences, boilerplate lines, spacing
and punctuation, the other script), a few exact copies, and, for most, fresh-looking "mosaics" (runs
of sentences from the record and two others of the same file, lightly noised) that survive dedup.
Seeded: the same sizes always give the same files.

``--english`` (issue #25): Python's reference documentation instead (``english_inputs``: the English
near-duplicate set's 551 prose paragraphs, in two files, and an uncased vocabulary built for them),
grown with ``tests.neardup_en``'s edits; the pipeline runs with ``segment.model: none`` and no
OpenCC, and the naive script takes its words from the fast tokenizer's word ids (``naive``).

``--set``: settings for the pipeline's builds, as ``python -m pipeline build --set`` takes them (for
example ``--set dedup.local_max_docs=0``: the distributed dedup graph, whose tasks hold a partition
each, instead of the one-task graph, which holds every document's keys up to that bound).

For each size, in this one process tree, one after the other on the same files:

- ``naive``: this file's ``naive`` subcommand, one plain Python process, no Ray (see ``naive``);
- ``pipeline``: ``python -m pipeline build`` (the legacy model segments in plain tasks on every CPU:
  ``segment.runs_in_tasks``), Ray workers at the naive process's priority (nice 0).

Times are wall seconds of each child process, start to exit (imports, model loads and, for the
pipeline, starting Ray included). Peak memory is VmHWM from /proc (``tests.processes.Watcher``):
the driver process itself, and the largest Ray worker below it (which includes the pages of Ray's
object store it mapped). Then the outputs are compared (``compare``): the same kept documents in
the same order, the same fate for every record, the same words, and the same token ids and
word_start per document (the pipeline's shards unpacked with the naive per-document lengths; every
[SEP] inside a pipeline example must fall on a document boundary, and every document boundary
not at an example's end must be such a [SEP]).

First, the floor: both run on the first ``FLOOR_RECORDS`` lines of each input file, a build that does next
to nothing. Its time is what every build pays whatever its size (for the pipeline: start-up, Ray's daemons
and worker processes, model loads, the commit and the exit), so the speedup at a size is at most
``naive_s`` / the pipeline's floor. Beside it, Ray's own share of that floor (``bench/ray_floor.py``: a
process that starts Ray as a build does and runs as many Ray Data executions of 3 rows, then stops it;
not with ``--running-ray``).

Prints one JSON line for the floor, one for Ray's share of it and one per size, then a final JSON object:
``same_output``, ``speedup_vs_naive`` (naive seconds / pipeline seconds) per size, both times, the floor's
(``floor_s``, with Ray's share) and each size's above it, peak memory, the Ray Data executions the build
ran (``ray_data_executions``: the line Ray Data logs for each, counted in the build's log), and the load
average of the machine before and after each size. Wall times mean little on a machine that other work
keeps busy (a load average above the core count): the CPU seconds of each process tree (``cpu_s``, and per kind of
process for the pipeline, ``cpu_s_by_process``: the profile) do not depend on it.

``--running-ray``: every pipeline build joins one local Ray instance of ``--cpus`` CPUs that the
bench starts first and stops last (``bench/running_ray.py``), as builds on a cluster join one: the
pipeline's floor and speedups without Ray's own start-up and shutdown (the CPU seconds of every run,
the naive script's too, then include the idle instance's). Not the figures issue #23 names, which
are for a build that starts Ray itself.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import child_env, last_record, measured  # noqa: E402
from bench.ray_floor import ray_data_alone  # noqa: E402
from bench.running_ray import builds_env  # noqa: E402
from bench.shared_data import C3, CMRC, DRCD, emit, inputs_or_sample, legacy_model, vocab_file  # noqa: E402

SIZES = (1, 4, 16)
MAX_SEQ_LEN = 512
EXACT_SHARE, NEAR_SHARE = 0.02, 0.10  # of the variants; the rest are mosaics
LTP_BATCH = 256  # documents per LTP call in the naive script
RAY_DATA_EXECUTION = "Starting execution of Dataset"  # the line Ray Data logs once per execution (with --verbose)
FLOOR_RECORDS = 3  # lines of each input file in the floor run: a build that does next to nothing
TOKENIZER_BATCH = 256  # documents per tokenizer call, and per packing batch (tokenize.batch_size's default)


# --- input growth -------------------------------------------------------------------------------


def _texts(path: Path) -> list[tuple[str, str]]:
    """(id, text) of the file's records that have a non-blank text."""
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"].strip():
            out.append((str(obj.get("id")), obj["text"]))
    return out


def _mosaic(rng: random.Random, noise, split, join: str, text: str, others: list[str]) -> str:
    """A fresh-looking document: a run of the text's sentences and runs of two other texts, shuffled, noised."""
    runs = []
    for source in [text, *others]:
        sentences = [s for s in split(source) if s]
        length = max(1, round(len(sentences) * rng.uniform(0.25, 0.45)))
        start = rng.randrange(max(1, len(sentences) - length + 1))
        runs.append(join.join(sentences[start : start + length]))
    rng.shuffle(runs)
    return noise(join.join(runs))


def _editing(rng: random.Random, texts: list[str], english: bool, traditional: bool):
    """(edit, noise, sentence split, sentence joiner) for one file's texts: ``tests.neardup_en``'s
    editor for English, ``tests.neardup``'s for Chinese."""
    from tests import neardup, neardup_en

    if english:
        editor_en = neardup_en.Editor(rng, texts)
        return (lambda text: editor_en.copy(text)[0]), editor_en.noise, neardup_en.SENTENCE_END.split, " "
    editor = neardup.Editor(rng, texts)
    return (
        lambda text: editor.copy(text, traditional)[0],
        lambda text: editor.noise(text, traditional),
        neardup.SENTENCE_END.split,
        "",
    )


def grow(files: list[Path], scale: int, folder: Path, seed: int = 0, english: bool = False) -> list[Path]:
    """Each file with ``scale - 1`` variants of each of its records appended (module doc); originals first."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    grown = []
    for path in files:
        records = _texts(path)
        texts = [text for _, text in records]
        traditional = "traditional" in str(path) or "_tw" in path.name
        edit, noise, split, join = _editing(rng, texts, english, traditional)
        lines = [path.read_text(encoding="utf-8").rstrip("\n")]
        for copy in range(1, scale):
            for record_id, text in records:
                roll = rng.random()
                if roll < EXACT_SHARE:
                    variant = text
                elif roll < EXACT_SHARE + NEAR_SHARE:
                    variant = edit(text)
                else:
                    variant = _mosaic(rng, noise, split, join, text, rng.sample(texts, min(2, len(texts))))
                lines.append(json.dumps({"id": f"{record_id}#v{copy}", "text": variant}, ensure_ascii=False))
        out = folder / path.name
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        grown.append(out)
    return grown


def english_inputs(folder: Path) -> tuple[list[Path], Path]:
    """The English near-duplicate set's source paragraphs (Python's reference docs, 551 of them with
    CPython 3.11), halved into two JSONL files, and an uncased vocabulary built for them the way the
    English example's is (``examples/make_english.py``)."""
    from examples.make_english import vocab
    from tests.neardup_en import paragraphs

    texts = paragraphs()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for half, part in enumerate((texts[: len(texts) // 2], texts[len(texts) // 2 :])):
        files.append(folder / f"python_docs_{half}.jsonl")
        files[-1].write_text("".join(json.dumps({"id": f"py-{half}-{i}", "text": t}) + "\n" for i, t in enumerate(part)))
    vocab_path = folder / "vocab-en.txt"
    vocab_path.write_text("".join(f"{token}\n" for token in vocab(texts)), encoding="utf-8")
    return files, vocab_path


# --- the naive sequential script ----------------------------------------------------------------


def naive(inputs: list[str], model: str, vocab: str, out: Path, max_seq_len: int) -> dict:
    """The script a user would write: one process, no Ray, plain library calls for the heavy parts.

    Heavy parts: ``opencc.OpenCC.convert``, datasketch's ``MinHash.update_batch`` and ``MinHashLSH``
    (insert and query), LTP's legacy perceptron in batches of ``LTP_BATCH`` documents (loaded with
    ``ltp_loading.load_legacy``, LTP's own Rust models without torch), ``BertTokenizerFast`` in
    batches with offsets, pyarrow Parquet and IPC writers. It reuses, from the project, only the
    Ray-free functions that define what the corpus is, so that the two outputs can be equal:

    - ``read.doc_id_for`` (the doc_id), ``normalize.clean`` and ``normalize.fingerprint`` (text rules,
      dedup fingerprint), OpenCC repeated to its fixed point (``normalize.opencc_fixed_point``'s default);
    - ``minhash.shingle_hash_chunks``: the project's shingle hash (datasketch's ``hashfunc`` for the
      same signatures), computed for all shingles of a document at once and handed to ``update_batch``
      (``hashfunc=int``): calling it once per shingle would cost ~7 us a shingle, while datasketch's
      default SHA-1 over encoded shingles costs about 1.4 times what this costs;
    - ``word_alignment.align_words`` (words that join to the text exactly), ``tokenize.word_starts`` (the
      word_start rule), ``pack.FullPacker`` (the packing rule).

    Dedup semantics are the pipeline's defaults: exact duplicates (same normalized text) first; then
    LSH with the same bands (16 x 8 for 0.8 / 128), each candidate pair checked by its estimated
    Jaccard (at least ``verify_cut``, 0.729), connected components; the kept document of a group is
    the first by (source, record), which is the input order here.

    With ``model == "none"`` (``--english``) there is no LTP and no OpenCC: a document's words come
    from the fast tokenizer's own word ids (a token starts a word where its word id changes; the
    words are the text cut at each word's character span), independently of the pipeline's
    ``bert_words``.
    """
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    import numpy as np
    import opencc
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH
    from transformers import BertTokenizerFast

    from operators.columns import EXACT_DUP, FILTERED, KEPT, NEAR_DUP, REJECTED
    from operators.dedup.minhash import MinHashConfig, shingle_hash_chunks
    from operators.normalize import NormalizeConfig, clean, fingerprint
    from operators.pack import FullPacker, example_schema
    from operators.read import doc_id_for
    from operators.segment.ltp_loading import load_legacy
    from operators.segment.word_alignment import align_words
    from operators.tokenize import continuation_mask, id_type, word_starts

    english = model == "none"  # segment.model: none; the words are the fast tokenizer's word ids
    ltp = None if english else load_legacy(model)
    tokens = Path(vocab).read_text(encoding="utf-8").split("\n")
    tokens = tokens[:-1] if tokens[-1] == "" else tokens
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(tokens)}, do_lower_case=True)
    lap("load")

    records = []  # (source, record, doc_id, raw text or None)
    for source in inputs:
        with open(source, "rb") as file:
            for number, line in enumerate(file.read().split(b"\n")):
                content = line.rstrip(b"\r")
                if not content.strip():
                    continue
                try:
                    obj = json.loads(content.removeprefix(b"\xef\xbb\xbf").decode("utf-8"), strict=False)
                    text = obj.get("text") if isinstance(obj, dict) else None
                except ValueError:
                    text = None
                records.append((source, number, doc_id_for(source, number, content), text if isinstance(text, str) else None))
    lap("read")

    converter = None if english else opencc.OpenCC("t2s")
    min_chars = NormalizeConfig().min_chars
    fates = {}  # doc_id -> (fate, detail)
    docs = []  # (doc_id, text, fingerprint) of the records that go on to dedup, in input order
    for source, number, doc_id, raw in records:
        if raw is None:
            fates[doc_id] = (REJECTED, "unreadable")
            continue
        text = clean(raw)
        for _ in range(0 if english else 4):
            converted = converter.convert(text)
            if converted == text:
                break
            text = converted
        if len(text) < min_chars:
            fates[doc_id] = (FILTERED, "too_short")
            continue
        docs.append((doc_id, text, fingerprint(text)))
    lap("normalize")

    cfg = MinHashConfig()
    first_with_text: dict[str, str] = {}
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, params=cfg.band_rows)
    minhashes: dict[str, MinHash] = {}
    parent: dict[str, str] = {}

    order = {doc_id: index for index, (doc_id, _, _) in enumerate(docs)}

    def root(doc_id: str) -> str:
        while parent.get(doc_id, doc_id) != doc_id:
            parent[doc_id] = parent.get(parent[doc_id], parent[doc_id])  # path halving
            doc_id = parent[doc_id]
        return doc_id

    for doc_id, text, print_ in docs:
        if text in first_with_text:
            fates[doc_id] = (EXACT_DUP, first_with_text[text])
            continue
        first_with_text[text] = doc_id
        if not print_:
            continue
        minhash = MinHash(num_perm=cfg.num_perm, seed=cfg.seed, hashfunc=int)
        for hashes in shingle_hash_chunks(print_, cfg.ngram):
            minhash.update_batch(hashes.tolist())
        for other in lsh.query(minhash):  # documents before this one
            if minhash.jaccard(minhashes[other]) >= cfg.verify_cut:
                a, b = sorted((root(doc_id), root(other)), key=order.__getitem__)
                if a != b:  # the earlier document is the root: it is kept
                    parent[b] = a
        lsh.insert(doc_id, minhash)
        minhashes[doc_id] = minhash
    kept = []
    for doc_id, text, _ in docs:
        if doc_id in fates:  # an exact duplicate: point at the document finally kept for its text
            fates[doc_id] = (EXACT_DUP, root(fates[doc_id][1]))
        elif root(doc_id) != doc_id:
            fates[doc_id] = (NEAR_DUP, root(doc_id))
        else:
            fates[doc_id] = (KEPT, None)
            kept.append((doc_id, text))
    lap("dedup")

    texts = [text for _, text in kept]
    words = []
    for start in range(0, 0 if english else len(texts), LTP_BATCH):
        batch = texts[start : start + LTP_BATCH]
        words += [align_words(text, ws) for text, ws in zip(batch, ltp.pipeline(batch, tasks=["cws"]).cws)]
    lap("segment")

    continuation = continuation_mask(tokenizer)
    ids_type = id_type(len(continuation))
    dtype = ids_type.to_pandas_dtype()
    encoded = []  # (input_ids, word_start) per kept document
    for start in range(0, len(texts), TOKENIZER_BATCH):
        batch = texts[start : start + TOKENIZER_BATCH]
        out_ = tokenizer(batch, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
        for i, (text, ids, offsets) in enumerate(zip(batch, out_["input_ids"], out_["offset_mapping"])):
            ids = np.array(ids, dtype=dtype)
            if english:  # a word starts where the word id changes; the words are the text cut at their spans
                word_ids = out_.word_ids(i)
                spans = [out_.word_to_chars(i, word) for word in dict.fromkeys(word_ids)]
                cuts = sorted({0, len(text), *(offset for span in spans for offset in span)})
                words.append([text[a:b] for a, b in zip(cuts, cuts[1:])])
                encoded.append((ids, np.array([w != v for w, v in zip(word_ids, [None, *word_ids])], dtype=bool)))
            else:
                starts = np.array(offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
                encoded.append((ids, word_starts(ids, starts, list(map(len, words[start + i])), continuation)))
    lap("tokenize")

    packer = FullPacker(max_seq_len, tokenizer.cls_token_id, tokenizer.sep_token_id, ids_type)
    examples = [e for start in range(0, len(encoded), TOKENIZER_BATCH) for e in packer.pack(encoded[start : start + TOKENIZER_BATCH])]
    schema = example_schema(ids_type)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    shards = pa.table(
        [pa.array([ids for ids, _ in examples], schema.field(0).type), pa.array([ws for _, ws in examples], schema.field(1).type)],
        schema=schema,
    )
    with pa.ipc.new_stream(out / "shards" / "part-00000.arrow", schema) as writer:
        writer.write_table(shards, max_chunksize=1024)
    source_of = {doc_id: (source, number) for source, number, doc_id, _ in records}
    pq.write_table(
        pa.table(
            {
                "doc_id": [doc_id for doc_id, _ in kept],
                "source": [source_of[doc_id][0] for doc_id, _ in kept],
                "text": texts,
                "words": pa.array(words, pa.list_(pa.string())),
                "input_ids": pa.array([ids for ids, _ in encoded], pa.list_(ids_type)),
                "word_start": pa.array([ws for _, ws in encoded], pa.list_(pa.bool_())),
            }
        ),
        out / "docs.parquet",
    )
    pq.write_table(
        pa.table(
            {
                "source": [source for source, _, _, _ in records],
                "record": pa.array([number for _, number, _, _ in records], pa.int64()),
                "doc_id": [doc_id for _, _, doc_id, _ in records],
                "fate": [fates[doc_id][0] for _, _, doc_id, _ in records],
                "detail": [fates[doc_id][1] for _, _, doc_id, _ in records],
            }
        ),
        out / "fates.parquet",
    )
    lap("pack+write")
    return {"seconds": seconds, "docs": len(kept), "examples": len(examples)}


# --- comparing the outputs ----------------------------------------------------------------------


def _pipeline_files(out: Path, folder: str) -> list[Path]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return [out / f["path"] for f in manifest["files"] if f["path"].startswith(folder + "/")]


def _flat(column):
    """(values, lengths) of a list column, as numpy."""
    import numpy as np
    import pyarrow.compute as pc

    column = column.combine_chunks()
    return pc.list_flatten(column).to_numpy(zero_copy_only=False), np.asarray(pc.list_value_length(column))


def compare(naive_out: Path, pipeline_out: Path, cls_id: int, sep_id: int) -> dict:
    """Same kept documents (in order), fates, words, and token ids / word_start per document (module doc)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    mine = pq.read_table(naive_out / "docs.parquet")
    theirs = pa.concat_tables(pq.read_table(p) for p in _pipeline_files(pipeline_out, "docs"))
    naive_fates = pq.read_table(naive_out / "fates.parquet").sort_by([("source", "ascending"), ("record", "ascending")])
    fates = pa.concat_tables(pq.read_table(p) for p in _pipeline_files(pipeline_out, "fates"))
    fates = fates.sort_by([("source", "ascending"), ("record", "ascending")])
    same_docs = mine["doc_id"].to_pylist() == theirs["doc_id"].to_pylist()
    fate_pairs = list(zip(naive_fates["doc_id"].to_pylist(), naive_fates["fate"].to_pylist()))
    differing = [p for p, q in zip(fate_pairs, zip(fates["doc_id"].to_pylist(), fates["fate"].to_pylist())) if p != q]
    result = {
        "same_docs": same_docs,
        "same_fates": len(fate_pairs) == fates.num_rows and not differing,
        "docs_naive": mine.num_rows,
        "docs_pipeline": theirs.num_rows,
        "fates_differing": len(differing) + abs(len(fate_pairs) - fates.num_rows),
        "fates_differing_first": differing[:3],
    }
    if not same_docs:
        return {**result, "same_words": None, "same_tokens": None, "same_output": False}
    result["same_words"] = mine["text"].equals(theirs["text"]) and mine["words"].equals(theirs["words"])

    examples = []
    for path in _pipeline_files(pipeline_out, "shards"):
        with pa.ipc.open_stream(path) as reader:
            examples.append(reader.read_all())
    shards = pa.concat_tables(examples)
    ids, lengths = _flat(shards["input_ids"])
    starts, _ = _flat(shards["word_start"])
    ends = np.cumsum(lengths) - 1
    structural = (ids == cls_id) | (ids == sep_id)
    well_formed = bool((ids[ends - lengths + 1] == cls_id).all() and (ids[ends] == sep_id).all() and starts[structural].all())
    before = np.cumsum(~structural) - ~structural  # content tokens before each position
    inner_seps = np.flatnonzero(ids == sep_id)
    inner_seps = inner_seps[~np.isin(inner_seps, ends)]
    naive_ids, naive_lengths = _flat(mine["input_ids"])
    naive_starts, _ = _flat(mine["word_start"])
    naive_bounds = set(np.cumsum(naive_lengths[naive_lengths > 0])[:-1].tolist())
    result["same_tokens"] = bool(
        well_formed
        and np.array_equal(ids[~structural], naive_ids)
        and np.array_equal(starts[~structural], naive_starts)
        and naive_bounds - set(before[ends].tolist()) == set(before[inner_seps].tolist())
    )
    result["tokens"] = int(len(naive_ids))
    result["same_output"] = bool(result["same_docs"] and result["same_fates"] and result["same_words"] and result["same_tokens"])
    return result


# --- running both -------------------------------------------------------------------------------


def floor_inputs(files: list[Path], folder: Path) -> list[Path]:
    """The first ``FLOOR_RECORDS`` lines of each input file, in files of the same names under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in files:
        lines = path.read_text(encoding="utf-8").split("\n")[:FLOOR_RECORDS]
        (folder / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        out.append(folder / path.name)
    return out


def run_size(size: str, files: list[Path], model: Path | str, vocab: Path, cpus: int, workdir: Path,
             env: dict[str, str], settings_set: Sequence[str] = ()) -> dict:
    from operators.tokenize import load_tokenizer

    naive_out, pipeline_out = workdir / f"naive-{size}", workdir / f"pipeline-{size}"
    inputs = [str(p) for p in files]
    load_before = os.getloadavg()[0]
    naive_run = measured(
        [sys.executable, __file__, "naive", "--out", str(naive_out), "--model", str(model), "--vocab", str(vocab), *inputs],
        workdir / f"naive-{size}.log", env,
    )
    config = workdir / f"pipeline-{size}.json"  # JSON is YAML
    settings = {"inputs": inputs, "output": str(pipeline_out), "tokenize": {"tokenizer": str(vocab), "max_seq_len": MAX_SEQ_LEN}}
    if model == "none":
        settings |= {"normalize": {"opencc": "none"}, "segment": {"model": "none"}}
    else:
        settings["segment"] = {"model": str(model)}
    config.write_text(json.dumps(settings))
    pipeline_run = measured(
        [sys.executable, "-m", "pipeline", "build", str(config), "--num-cpus", str(cpus), "--verbose",
         *(arg for setting in settings_set for arg in ("--set", setting))],
        workdir / f"pipeline-{size}.log", env,
    )
    report = json.loads((pipeline_out / "report.json").read_text(encoding="utf-8"))
    pipeline_log = (workdir / f"pipeline-{size}.log").read_text(encoding="utf-8", errors="replace")
    naive_report = last_record(workdir / f"naive-{size}.log")
    tokenizer = load_tokenizer(str(vocab))
    same = compare(naive_out, pipeline_out, tokenizer.cls_token_id, tokenizer.sep_token_id)
    return {
        "size": size,
        "input_mb": round(report["input_bytes"] / 1e6, 2),
        "records": sum(report["sources"].values()),
        "kept_docs": report["corpus"]["docs"],
        "fates": {fate: n for fate, n in report["fates"].items() if "." not in fate},
        "naive_s": naive_run["seconds"],
        "pipeline_s": pipeline_run["seconds"],
        "speedup_vs_naive": round(naive_run["seconds"] / pipeline_run["seconds"], 3),
        "pipeline_build_s": report["seconds"],
        "ray_data_executions": pipeline_log.count(RAY_DATA_EXECUTION),
        "naive": {**naive_run, "stages": naive_report["seconds"]},
        "pipeline": {**pipeline_run, "stages": {k: v["seconds"] for k, v in report["stages"].items()}},
        **same,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    if sys.argv[1:2] == ["naive"]:
        parser = argparse.ArgumentParser(prog="bench/e2e.py naive")
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--model", required=True)
        parser.add_argument("--vocab", required=True)
        parser.add_argument("--max-seq-len", type=int, default=MAX_SEQ_LEN)
        parser.add_argument("inputs", nargs="+")
        args = parser.parse_args(sys.argv[2:])
        emit(naive(sorted(args.inputs), args.model, args.vocab, args.out, args.max_seq_len))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="input sizes, as multiples of the input")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="Ray CPUs (default: all)")
    parser.add_argument("--keep", type=Path, default=None, help="keep inputs and outputs in this folder")
    parser.add_argument("--english", action="store_true",
                        help="English: Python's reference docs, segment.model none, no OpenCC (module doc)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for the pipeline's builds")
    parser.add_argument("--running-ray", action="store_true", help="every build joins one Ray instance started first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch, builds_env(child_env(), args.running_ray, args.cpus) as env:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.english:
            (inputs, vocab), model = english_inputs(workdir / "input-en"), "none"
        else:
            inputs, model, vocab = inputs_or_sample([CMRC, C3, DRCD]), legacy_model(workdir), vocab_file()
        emit({"bench": "e2e-english" if args.english else "e2e", "inputs": [p.name for p in inputs], "model": str(model), "vocab": vocab.name,
              "cpus": args.cpus, "cores": os.cpu_count(), "settings": args.set,
              "running_ray": args.running_ray})
        floor = run_size("floor", floor_inputs(inputs, workdir / "input-floor"), model, vocab, args.cpus, workdir, env,
                         args.set)
        emit(floor)
        ray_alone = None  # Ray's own share of the floor: starting it and running as many empty executions
        if not args.running_ray:
            ray_alone = ray_data_alone(args.cpus, floor["ray_data_executions"], workdir / "ray-data-alone.log", env)
            emit({"size": "ray_data_alone", **ray_alone})
        rows = []
        for size in args.sizes:
            files = inputs if size == 1 else grow(inputs, size, workdir / f"input-{size}x", english=args.english)
            rows.append(run_size(f"{size}x", files, model, vocab, args.cpus, workdir, env, args.set))
            emit(rows[-1])
        base = rows[0]
        emit({
            "same_output": floor["same_output"] and all(row["same_output"] for row in rows),
            "speedup_vs_naive": {row["size"]: row["speedup_vs_naive"] for row in rows},
            "naive_s": {row["size"]: row["naive_s"] for row in rows},
            "pipeline_s": {row["size"]: row["pipeline_s"] for row in rows},
            # the cost of a build that does next to nothing, and what each size costs above it
            "floor_s": {"naive": floor["naive_s"], "pipeline": floor["pipeline_s"],
                        "ray_data_alone": ray_alone and ray_alone["seconds"]},
            "naive_s_above_floor": {row["size"]: round(row["naive_s"] - floor["naive_s"], 2) for row in rows},
            "pipeline_s_above_floor": {row["size"]: round(row["pipeline_s"] - floor["pipeline_s"], 2) for row in rows},
            # time per input MB relative to the smallest size: 1.0 = linear, above 1 = worse than linear
            "pipeline_s_per_mb_vs_first": {
                row["size"]: round(row["pipeline_s"] / row["input_mb"] / (base["pipeline_s"] / base["input_mb"]), 3) for row in rows
            },
            # CPU seconds of each process tree: what the work costs whatever else runs on the machine
            "naive_cpu_s": {row["size"]: row["naive"]["cpu_s"] for row in rows},
            "pipeline_cpu_s": {row["size"]: row["pipeline"]["cpu_s"] for row in rows},
            "peak_driver_mb": {row["size"]: row["pipeline"]["peak_driver_mb"] for row in rows},
            "peak_worker_mb": {row["size"]: row["pipeline"]["peak_worker_mb"] for row in rows},
            # the largest worker's own memory (anonymous: without the object store's pages it mapped)
            "peak_worker_private_mb": {row["size"]: row["pipeline"]["peak_worker_private_mb"] for row in rows},
            "peak_naive_mb": {row["size"]: row["naive"]["peak_driver_mb"] for row in rows},
            "load_average": {row["size"]: row["load_average"] for row in rows},
        })


if __name__ == "__main__":
    main()

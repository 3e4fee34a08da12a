"""Dedup benchmark: signature speed, the check's cost and gain, the near-dup stage against datatrove, the
whole stage on both executors of the graph.

    python bench/dedup.py [signatures] [check] [near] [stage] [task]   (default: all)

Input: ../shared/data's CMRC2018 + C3 (simplified) and DRCD (traditional) paragraphs when
present, else the bundled sample. Prints one JSON line per measurement:

- ``signatures``: our signature stage (``MinHashSigner`` signatures + band keys + sketches, as
  ``DedupKeyer`` runs it) against a datasketch loop (one ``MinHash(128)`` per document,
  ``update_batch`` of its encoded 5-gram shingles), same fingerprints, same process, best of 3;
  ``signature_speedup_vs_datasketch`` and MB/s of fingerprint per core.
- ``check``: the seeded near-duplicate set (tests/neardup.py) through ``dedup.apply`` on a local
  Ray instance with the check, without it, and with datasketch's 9 x 13 bands: pairwise
  precision / recall and seconds.
- ``near_dup_stage``: ``dedup.apply`` (near duplicates only, exact off) on each executor, against
  datatrove's MinhashDedupSignature / Buckets / Cluster / Filter on the same fingerprints
  (character 5-grams, 16 x 8 buckets, ``LocalPipelineExecutor`` with one task per CPU): seconds
  on the corpus, and seconds, precision and recall on the seeded set. datatrove runs in this
  Python when it imports there, else in the bench's own virtual environment
  (``bench/.datatrove-venv``, installed on first use).
- ``stage``: the whole stage (signing, exact + near + check + components + audit, to the
  duplicates and audit written) at 1x, 4x and 16x the corpus, grown with edited copies of real
  documents (0.5 %-10 % of characters changed), on each executor (``local``: the graph in one
  task; ``distributed``: the shuffles), each in a fresh process that only runs the stage, its
  input read from Parquet files of 4,096 rows and materialized first, outside the measure:
  seconds (``signing_s`` to the keys, ``graph_s`` after), MB of fingerprint per second per core,
  CPU seconds of the driver and every Ray worker, the largest private RSS any Ray worker reached
  above what it held before (sampled from /proc) and which worker, the largest high-water mark
  (which also counts object-store pages a worker mapped), the driver's peak RSS; then per scale
  ``local_equals_distributed``: whether both wrote the same duplicates, audit rows and index rows.
- ``task``: the one-task graph alone (``local.decide_blocks``, the generator a Ray task runs) at 16x,
  in a fresh process, over keys signed here and read from a memory-mapped Arrow file in blocks of
  4,096 rows, as Ray's object store serves a task its argument blocks (mapped pages, not the task's
  own memory); each table it yields is dropped, as Ray stores it elsewhere. Its anonymous memory
  (RssAnon, sampled every 2 ms) before and its growth, and seconds; once with documents only, once
  with one record with a fate (no keys) in every block.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.shared_data import C3, CMRC, DRCD, SHARED, emit, inputs_or_sample  # noqa: E402
from pipeline.cluster import LOCAL_RAY_OPTIONS, configure_data_context  # noqa: E402

SCALES = (1, 4, 16)
INPUT_FILE_ROWS = 4096  # rows per input file of the stage runs (the reader's default batch is 1,024 records)
STAGE_RUN = "_stage_run"  # the hidden section a stage run's child process is started with


def load_fingerprints(paths: list[Path]) -> list[tuple[str, str, str]]:
    """(source, text, fingerprint) of every record with a text, normalized as the pipeline does (t2s)."""
    from operators.normalize import NormalizeConfig, Normalizer

    normalizer = Normalizer(NormalizeConfig())
    rows = []
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the bundled sample holds bad records on purpose
                continue
            text = record.get("text") if isinstance(record, dict) else None
            if isinstance(text, str):
                normalized, fingerprint, reason = normalizer.normalize(text)
                if reason is None:
                    rows.append((path.name, normalized, fingerprint))
    return rows


def best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def bench_signatures(fingerprints: list[str]) -> None:
    from datasketch import MinHash

    from operators.dedup.minhash import MinHashConfig, MinHashSigner, sketches

    cfg = MinHashConfig()
    signer = MinHashSigner(cfg)

    def ours() -> None:
        for start in range(0, len(fingerprints), 1024):  # DedupKeyer's batches
            batch = fingerprints[start : start + 1024]
            signatures = signer.signatures(batch)
            signer.buckets_of(batch, signatures)
            sketches(signatures)

    def datasketch() -> None:
        n = cfg.ngram
        for fingerprint in fingerprints:
            minhash = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
            minhash.update_batch([fingerprint[i : i + n].encode("utf-8") for i in range(len(fingerprint) - n + 1)])

    ours()  # warm up: imports, first allocations
    mb = sum(len(f.encode("utf-8")) for f in fingerprints) / 1e6
    ours_s, theirs_s = best_of(ours), best_of(datasketch)
    emit(
        {
            "bench": "signatures",
            "documents": len(fingerprints),
            "fingerprint_mb": round(mb, 3),
            "ours_s": round(ours_s, 4),
            "datasketch_s": round(theirs_s, 4),
            "signature_speedup_vs_datasketch": round(theirs_s / ours_s, 2),
            "signature_mb_per_s_per_core": round(mb / ours_s, 2),
            "datasketch_mb_per_s": round(mb / theirs_s, 2),
            "num_perm": cfg.num_perm,
            "bands_x_rows": list(cfg.band_rows),
        }
    )


def documents_table(rows: list[tuple[str, str, str]]):
    import pyarrow as pa

    from operators.columns import DOC_ID, FINGERPRINT, RECORD, SOURCE, TEXT

    return pa.table(
        {
            DOC_ID: [f"d{i}" for i in range(len(rows))],
            SOURCE: [source for source, _, _ in rows],
            RECORD: pa.array(range(len(rows)), pa.int64()),
            TEXT: [text for _, text, _ in rows],
            FINGERPRINT: [fingerprint for _, _, fingerprint in rows],
        }
    )


def start_ray() -> None:
    import logging

    import ray
    import ray.data

    ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False, **LOCAL_RAY_OPTIONS)  # as a build starts it
    context = ray.data.DataContext.get_current()
    configure_data_context(context)  # as a build configures it
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def run_dedup(table, cfg, collect: bool = True) -> tuple[float, float, dict[str, str] | int, int]:
    """(seconds to the duplicates, seconds with the audit, doc_id -> kept doc_id (or only their number), audit rows)."""
    import ray.data

    from operators import dedup
    from operators.columns import DETAIL, DOC_ID

    started = time.perf_counter()
    output = dedup.apply(ray.data.from_arrow(table), cfg)
    found = output.duplicates.count()
    first = time.perf_counter() - started
    audit = output.audit.materialize().count()
    total = time.perf_counter() - started
    if not collect:
        return first, total, found, audit
    return first, total, {row[DOC_ID]: row[DETAIL] for row in output.duplicates.take_all()}, audit


def seeded_set():
    """The seeded labelled set (tests/neardup.py) as (rows, truth: row doc_id -> cluster), or None without
    ../shared/data."""
    from operators.normalize import NormalizeConfig, Normalizer
    from tests.neardup import SIMPLIFIED, TRADITIONAL, load_paragraphs, make_set

    if not all((SHARED / p).exists() for p in SIMPLIFIED + TRADITIONAL):
        return None
    docs = make_set(load_paragraphs([SHARED / p for p in SIMPLIFIED]), load_paragraphs([SHARED / p for p in TRADITIONAL]))
    normalizer = Normalizer(NormalizeConfig())
    rows = [("neardup", *normalizer.normalize(d.text)[:2]) for d in docs]
    return rows, {f"d{i}": d.cluster for i, d in enumerate(docs)}  # documents_table names row i "d{i}"


def scores(truth: dict[str, str], labels: dict[str, str]) -> dict:
    """Pairwise precision / recall of predicted labels (a document not in ``labels`` is alone)."""
    from tests.neardup import pair_scores

    return pair_scores(truth, {d: labels.get(d, d) for d in truth}).as_dict()


def bench_check(rows) -> None:
    """The seeded labelled set through the real stage: check on, off, and datasketch's bands."""
    import ray

    from operators.dedup import DedupConfig
    from operators.dedup.minhash import MinHashConfig

    if (seeded := seeded_set()) is None:
        emit({"bench": "check", "skipped": "../shared/data is not available"})
        return
    table, truth = documents_table(seeded[0]), seeded[1]
    start_ray()
    try:
        run_dedup(table.slice(0, 200), DedupConfig())  # warm up: worker processes, imports
        variants = {
            "check_on_16x8": MinHashConfig(),
            "check_off_16x8": MinHashConfig(verify=False),
            "check_off_9x13": MinHashConfig(num_perm=117, bands=9, verify=False),  # datasketch's optimum for 0.8
        }
        for name, minhash in variants.items():
            first, total, pairs, _ = run_dedup(table, DedupConfig(minhash=minhash))
            emit({"bench": "check", "variant": name, "seconds_to_duplicates": round(first, 2),
                  "seconds_with_audit": round(total, 2), **scores(truth, pairs)})
    finally:
        ray.shutdown()


def bench_near_stage(rows) -> None:
    """The near-duplicate stage (exact off, check on) on both executors and datatrove's MinHash steps, on the
    same fingerprints: seconds on the corpus, and seconds, precision and recall on the seeded set."""
    import ray

    from operators.dedup import DedupConfig

    sets = {"corpus": (rows, None)}
    if (seeded := seeded_set()) is not None:
        sets["seeded"] = seeded
    python, why = datatrove_python()
    for name, (set_rows, truth) in sets.items():
        table = documents_table(set_rows)
        start_ray()
        try:
            run_dedup(table.slice(0, 200), DedupConfig())  # warm up: worker processes, imports
            for path, local_max_docs in PATHS.items():
                first, total, pairs, _ = run_dedup(table, DedupConfig(exact=False, local_max_docs=local_max_docs))
                emit({"bench": "near_dup_stage", "set": name, "engine": f"ours ({path})", "documents": len(set_rows),
                      "cpus": os.cpu_count(), "seconds": round(first, 2), "seconds_with_audit": round(total, 2),
                      "near_duplicates": len(pairs), **(scores(truth, pairs) if truth else {})})
        finally:
            ray.shutdown()
        result = run_datatrove(python, set_rows) if python else why
        if isinstance(result, str):
            emit({"bench": "near_dup_stage", "set": name, "engine": "datatrove", "ran": False, "why": result})
            continue
        clusters = result.pop("clusters")
        emit({"bench": "near_dup_stage", "set": name, "engine": "datatrove", "ran": True, **result,
              **(scores(truth, clusters) if truth else {})})


def run_datatrove(python: str, rows: list[tuple[str, str, str]]) -> dict | str:
    """datatrove's four MinHash steps over the rows' fingerprints (``DATATROVE``): its JSON line, or why it failed."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "fingerprints.jsonl"
        data.write_text("\n".join(json.dumps({"id": f"d{i}", "text": f}, ensure_ascii=False)
                                  for i, (_, _, f) in enumerate(rows)))
        done = subprocess.run([python, "-c", DATATROVE, str(data), scratch, str(os.cpu_count())],
                              capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return (done.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads(lines[-1])


DATATROVE_VENV = REPO / "bench" / ".datatrove-venv"  # the bench's own environment (git ignores it)
DATATROVE_PACKAGES = ["datatrove==0.10.1", "regex", "tokenizers"]  # what its MinHash steps import


def datatrove_python() -> tuple[str | None, str | None]:
    """(a Python whose datatrove imports, None) or (None, why not): this one's, else the bench's own
    virtual environment, made and installed from the package registry on first use."""
    check = ["-c", "import datatrove.pipeline.dedup.minhash"]
    if subprocess.run([sys.executable, *check], capture_output=True).returncode == 0:
        return sys.executable, None
    python = DATATROVE_VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(DATATROVE_VENV)], capture_output=True, text=True)
        if made.returncode:
            return None, f"could not make {DATATROVE_VENV}: {made.stderr.strip()[-200:]}"
    if subprocess.run([str(python), *check], capture_output=True).returncode:
        installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", *DATATROVE_PACKAGES],
                                   capture_output=True, text=True)
        if installed.returncode:
            return None, f"pip install {' '.join(DATATROVE_PACKAGES)} failed: {installed.stderr.strip()[-200:]}"
    return str(python), None


# Runs in a subprocess so that datatrove's imports (loguru, multiprocess) stay out of this one.
DATATROVE = r'''
import json, sys, time
from pathlib import Path
import datatrove
from datatrove.data import Document
from datatrove.executor.local import LocalPipelineExecutor
from datatrove.pipeline.dedup import minhash as dt
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

class Characters(WordTokenizer):  # Chinese: character 5-grams, as ours (datatrove's zh tokenizer needs spaCy + jieba)
    def word_tokenize(self, text): return [ch for ch in text if not ch.isspace()]
    def sent_tokenize(self, text): return [text]
    def span_tokenize(self, text): return [(0, len(text))]

dt.load_word_tokenizer = lambda language: Characters()
data, scratch, cpus = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]

class Reader:  # an object, not a closure over ``rows``: datatrove ships steps to its worker processes
    def __init__(self, path):
        self.path = path
    def __call__(self, _, rank=0, world_size=1):
        import json
        from pathlib import Path
        from datatrove.data import Document
        lines = Path(self.path).read_text(encoding="utf-8").splitlines()
        for line in lines[rank::world_size]:
            row = json.loads(line)
            yield Document(text=row["text"], id=row["id"])

reader = Reader(str(data))

config = dt.MinhashConfig(n_grams=5, num_buckets=16, hashes_per_bucket=8, hash_config=HashConfig(precision=32, hash_fc="sha1"))  # its xxhash wrapper predates xxhash 4
steps = [
    ([reader, dt.MinhashDedupSignature(output_folder=f"{scratch}/sigs", config=config, language="zh")], cpus),
    ([dt.MinhashDedupBuckets(input_folder=f"{scratch}/sigs", output_folder=f"{scratch}/buckets", config=config)], config.num_buckets),
    ([dt.MinhashDedupCluster(input_folder=f"{scratch}/buckets", output_folder=f"{scratch}/remove_ids", config=config,
                             save_cluster_id=True)], 1),
    ([reader, dt.MinhashDedupFilter(input_folder=f"{scratch}/remove_ids")], cpus),
]
seconds = {}
for index, (pipeline, tasks) in enumerate(steps):
    started = time.perf_counter()
    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=cpus, logging_dir=f"{scratch}/logs{index}").run()
    seconds[type(pipeline[-1]).__name__] = round(time.perf_counter() - started, 2)
removed = sum(path.stat().st_size // 4 for path in Path(scratch, "remove_ids").glob("*.remove"))  # uint32 indices
clusters = {}  # row id -> cluster, from each reader rank's (index in the rank, cluster id) pairs
for path in Path(scratch, "remove_ids").glob("*.clusters"):
    rank, pairs = int(path.stem), memoryview(path.read_bytes()).cast("I")
    for index, cluster in zip(pairs[0::2], pairs[1::2]):
        clusters[rows[rank + index * cpus]["id"]] = f"c{cluster}"
print(json.dumps({"documents": len(rows), "near_duplicates": removed, "seconds": round(sum(seconds.values()), 2),
                  "stages": seconds, "clusters": clusters}))
'''


def grown(rows: list[tuple[str, str, str]], scale: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """The rows plus ``scale - 1`` edited copies of each: 0.5 %-10 % of the fingerprint's characters changed."""
    rng = random.Random(seed)
    out = list(rows)
    for copy in range(1, scale):
        for source, _, fingerprint in rows:
            chars = list(fingerprint)
            for _ in range(max(1, round(len(chars) * rng.uniform(0.005, 0.10)))):
                chars[rng.randrange(len(chars))] = chr(0x4E00 + rng.randrange(20_000))
            edited = "".join(chars)
            out.append((f"{source}#copy{copy}", edited, edited))
    return out


def bench_stage(rows) -> None:
    """Each scale through each executor of the graph, each run in a fresh process that only runs the stage
    (so its driver's peak is its own); then whether both executors wrote the same rows."""
    cpus = os.cpu_count()
    with tempfile.TemporaryDirectory() as scratch:
        for scale in SCALES:
            folder, table = Path(scratch) / f"x{scale}", documents_table(grown(rows, scale))
            write_input(table, folder / "input")
            input_mb = sum(len(t.encode()) for t in table.column("fingerprint").to_pylist()) / 1e6
            documents = table.num_rows
            del table
            for path, local_max_docs in PATHS.items():
                run = subprocess.run([sys.executable, __file__, STAGE_RUN, str(folder), path, str(local_max_docs)],
                                     capture_output=True, text=True, check=True)
                measured = json.loads(run.stdout.strip().splitlines()[-1])
                emit({"bench": "stage", "scale": scale, "path": path, "documents": documents,
                      "input_mb": round(input_mb, 2), "seconds": measured["seconds"],
                      "mb_per_s_per_core": round(input_mb / measured["seconds"] / cpus, 2), "cpus": cpus,
                      "graph_mb_per_s_per_core": round(input_mb / measured["graph_s"] / cpus, 2),
                      "peak_worker_mb": measured["peak_worker_private_rss_mb"], **measured})
            emit({"bench": "stage", "scale": scale, "local_equals_distributed": same_rows(folder)})


PATHS = {"local": 2**62, "distributed": 0}  # dedup.local_max_docs that forces each executor


def same_rows(folder: Path) -> bool:
    """Whether both executors wrote the same duplicates, audit rows and index rows (order aside)."""
    import pyarrow.parquet as pq

    def rows(path: str, name: str) -> list[tuple]:
        table = pq.read_table(folder / path / f"{name}.parquet")
        return sorted(zip(*(table[column].to_pylist() for column in table.column_names)))

    return all(rows("local", name) == rows("distributed", name) for name in ("duplicates", "audit", "index"))


def write_input(table, folder: Path) -> None:
    """Parquet files of ``INPUT_FILE_ROWS`` rows: the stage's input blocks stay the same size at every scale,
    as the reader's bounded batches keep them in a build."""
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for index, start in enumerate(range(0, table.num_rows, INPUT_FILE_ROWS)):
        pq.write_table(table.slice(start, INPUT_FILE_ROWS), folder / f"part-{index:05d}.parquet")


def write_parquet(ds, path: str) -> int:
    """``ds`` as one Parquet file, written by a Ray task (the driver holds no rows); its row count."""
    import ray

    def write(*blocks) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(blocks)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path)
        return table.num_rows

    return ray.get(ray.remote(write).remote(*ds.to_arrow_refs()))


def stage_run(folder: str, path: str, local_max_docs: str) -> None:
    """The whole stage (signing, exact + near + check + components + audit) over one scale's input, on one
    executor, to the duplicates and audit written as Parquet in ``folder/path``; prints one JSON line."""
    import pyarrow.parquet as pq
    import ray

    from operators import dedup, write
    from tests import processes

    start_ray()
    # one block a file, as the pipeline's reader bounds its blocks: Ray's read_parquet merges the files into
    # blocks that grow with the input (one block of all 32,928 rows at 4x, override_num_blocks or not)
    inputs = os.path.join(folder, "input")
    files = sorted(os.listdir(inputs))
    schema = pq.read_schema(os.path.join(inputs, files[0]))
    documents = write.read_in_order(inputs, files, schema).materialize()  # read before the watch
    watcher = processes.Watcher(os.getpid())
    watcher.start()
    started, driver_cpu = time.perf_counter(), time.process_time()
    written, cfg = os.path.join(folder, path), dedup.DedupConfig(local_max_docs=int(local_max_docs))
    try:
        keyed = dedup.keys(dedup.sign(documents, cfg), cfg)
        signed = time.perf_counter()
        output = dedup.graph(keyed, cfg)
        parts = {"duplicates": output.duplicates, "audit": output.audit, "index": output.index}
        counts = {name: write_parquet(part, os.path.join(written, f"{name}.parquet")) for name, part in parts.items()}
        ended, driver_cpu = time.perf_counter(), time.process_time() - driver_cpu
    finally:
        watcher.stop()
        ray.shutdown()
    private, hwm = watcher.ray_peaks(private=True), watcher.ray_peaks()
    print(json.dumps({
        "seconds": round(ended - started, 2), "signing_s": round(signed - started, 2),
        "graph_s": round(ended - signed, 2), "cpu_s": round(sum(watcher.cpu.values()) + driver_cpu, 2), **counts,
        "peak_worker_private_rss_mb": max(private.values(), default=0),
        "peak_worker": max(private, key=private.get, default=""),
        "peak_worker_hwm_mb_incl_shared_objects": max(hwm.values(), default=0),
        # VmHWM, not getrusage: Linux carries ru_maxrss over fork and exec, so that would be the parent's
        "driver_peak_rss_mb": processes.peak_rss_mb(os.getpid()),
    }, ensure_ascii=False))


TASK_RUN = "_task_run"  # the hidden section a task run's child process is started with
TASK_SCALE = 16


def bench_task(rows) -> None:
    """``decide_blocks`` in a process of its own over the 16x keys, without and with records with a fate."""
    import pyarrow as pa

    from operators.columns import DETAIL, FATE, FILTERED
    from operators.dedup.rules import BUCKETS, CONTENT, NODE, SKETCH, DedupConfig, DedupKeyer, key_rows, signed
    from tests import processes

    table = documents_table(grown(rows, TASK_SCALE))
    keyer = DedupKeyer(DedupConfig())
    with tempfile.TemporaryDirectory() as scratch:
        for fated in (False, True):
            blocks = []
            for start in range(0, table.num_rows, INPUT_FILE_ROWS):
                block = table.slice(start, INPUT_FILE_ROWS)
                fate = pa.array([FILTERED if fated and i == 0 else None for i in range(block.num_rows)], pa.string())
                block = block.append_column(FATE, fate).append_column(DETAIL, fate)
                blocks.append(key_rows(signed(block, keyer), [NODE, CONTENT, BUCKETS, SKETCH]))
            path = os.path.join(scratch, f"keys-{fated}.arrow")
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, blocks[0].schema) as writer:
                for block in blocks:
                    writer.write_table(block)
            child = subprocess.Popen([sys.executable, __file__, TASK_RUN, path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
            child.stdout.readline()  # imported and mapped
            before = peak = processes.private_rss_mb(child.pid)
            child.stdin.write("\n")
            child.stdin.flush()
            while child.poll() is None:
                peak = max(peak, processes.private_rss_mb(child.pid))
                time.sleep(0.002)
            measured = json.loads(child.stdout.read().strip().splitlines()[-1])
            with_a_fate = len(blocks) if fated else 0
            emit({"bench": "task", "scale": TASK_SCALE, "documents": table.num_rows - with_a_fate,
                  "records_with_a_fate": with_a_fate, "rss_anon_before_mb": before,
                  "rss_anon_growth_mb": peak - before, **measured})


def task_run(path: str) -> None:
    """The child of ``bench_task``: ``decide_blocks`` over the mapped keys once the parent is watching."""
    import pyarrow as pa
    import ray.data  # noqa: F401  (a Ray Data worker has it imported)

    from operators.dedup.local import decide_blocks
    from operators.dedup.rules import DedupConfig

    reader = pa.ipc.open_file(pa.memory_map(path))
    blocks = [pa.Table.from_batches([reader.get_batch(i)]) for i in range(reader.num_record_batches)]
    print("ready", flush=True)
    sys.stdin.readline()
    started, tables, rows = time.perf_counter(), 0, 0
    for table in decide_blocks(DedupConfig(), *blocks):
        tables, rows = tables + 1, rows + table.num_rows
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2), "tables": tables, "rows_out": rows}))


SECTIONS = ("signatures", "check", "near", "stage", "task")


def main() -> None:
    """All sections, or those named on the command line (``python bench/dedup.py stage``)."""
    if sys.argv[1:2] == [STAGE_RUN]:
        stage_run(*sys.argv[2:5])
        return
    if sys.argv[1:2] == [TASK_RUN]:
        task_run(sys.argv[2])
        return
    chosen = sys.argv[1:] or SECTIONS
    if set(chosen) - set(SECTIONS):
        sys.exit(f"sections: {', '.join(SECTIONS)}")
    inputs = inputs_or_sample([CMRC, C3, DRCD])
    started = time.perf_counter()
    rows = load_fingerprints(inputs)
    emit({"bench": "input", "files": [p.name for p in inputs], "documents": len(rows),
          "normalize_s": round(time.perf_counter() - started, 2)})
    if "signatures" in chosen:
        bench_signatures([f for _, _, f in rows])
    if "check" in chosen:
        bench_check(rows)
    if "near" in chosen:
        bench_near_stage(rows)
    if "stage" in chosen:
        bench_stage(rows)
    if "task" in chosen:
        bench_task(rows)


if __name__ == "__main__":
    main()

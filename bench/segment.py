"""Segment stage throughput: the pipeline's segment stage against a tight direct LTP loop, same sentences, same device.

    python bench/segment.py                 # legacy (CPU) model
    python bench/segment.py --neural        # also a random-weight neural model of LTP/small's size (GPU run)
    python bench/segment.py --neural --precision bf16   # the fast path in bf16 (or fp16), and how often it differs

Sentences: the SIGHAN PKU test lines from ../shared/data when present, else the bundled sample's
sentences, repeated `--repeat` times so that actor start-up is amortized as in a real corpus.
Legacy model: trained here on the PKU gold file when present (saved in the binary format LTP's
released legacy models use), else the bundled tiny model.

Direct: one process calls ``ltp.pipeline(batch, tasks=["cws"])`` over the sentences in order, for
each batch size in 32/128/512/2048 (the legacy model both single-threaded and with LTP's own Rust
`parallelism=True`, which uses every core); each figure is printed. Pipeline: ``segment.apply`` (the
real wrapper: plain tasks for the legacy model on a CPU, else an actor pool; batches, alignment, Arrow
output) over a Ray dataset of the same sentences,
timed from submission to the last output block (Ray workers at the direct loop's priority, nice 0),
actor start-up and model loading included (the same
run over one sentence per actor gives that fixed cost, `startup_s`, and a rate without it). Each side
gets the best of `--rounds` runs, interleaved, because the machine may be shared. The last line is
one JSON object with `ratio_pipeline_vs_direct` (pipeline sentences/s over the best direct
configuration's), the sentences/s of both and the device; on a GPU also NVML's utilisation of the GPU
during each run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Ray starts its workers at nice 15 (RAY_worker_niceness), below the direct loop's 0: on a machine shared with
# other work the actors would then get a fraction of the CPU the direct loop gets. Same priority for both.
os.environ.setdefault("RAY_worker_niceness", "0")
# The tokenizer on the calling thread, as in a one-thread actor (RAYON_NUM_THREADS=1): its work is then host work
# that HostClock sees, for LTP's loop and the fast path alike.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.shared_data import PKU_TEST, SAMPLE, SHARED_VOCAB, legacy_model  # noqa: E402
from operators.segment import SegmentConfig, runs_in_tasks, split_sentences  # noqa: E402
from operators.segment.ltp_loading import load_ltp  # noqa: E402
from operators.segment.neural_cws import PRECISIONS  # noqa: E402
from pipeline.cluster import LOCAL_RAY_OPTIONS  # noqa: E402
from tests.ltp_models import build_tiny_neural_model, sighan_lines, tiny_vocab  # noqa: E402

DIRECT_BATCH_SIZES = (32, 128, 512, 2048)
# 2,048 PKU sentences are ~180,000 characters: about the text of 64 documents (segment.batch_size's default)
CPU_BATCH_SIZE, CPU_BLOCK_ROWS = 2048, 8192
# A GPU pool: four actors sharing the GPU, small batches so that all four are fed from the first blocks; 40 passes
# (77,760 sentences) so that the pool's start-up (~14 s: CUDA, torch and the model in each actor) is amortized
GPU_ACTORS, GPU_BATCH_SIZE, GPU_NEURAL_REPEAT = 4, 512, 40
# LTP/small's backbone: Chinese ELECTRA-small (LTP/tiny is the same with 3 layers).
LTP_SMALL_BACKBONE = {
    "model_type": "electra",
    "embedding_size": 128,
    "hidden_size": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 512,
}


def bench_sentences() -> tuple[list[str], str]:
    if PKU_TEST.exists():
        return sighan_lines(PKU_TEST), "pku_test"
    texts = [json.loads(line)["text"] for path in sorted(SAMPLE.glob("*.jsonl")) for line in path.open(encoding="utf-8")]
    texts += (SAMPLE / "notes.txt").read_text(encoding="utf-8").splitlines()
    return [s.strip() for text in texts for s in split_sentences(text) if s.strip()], "sample"


def neural_small_model(workdir: Path) -> Path:
    vocab = SHARED_VOCAB.read_text(encoding="utf-8").split("\n")[:-1] if SHARED_VOCAB.exists() else tiny_vocab()
    return build_tiny_neural_model(workdir / "ltp-small-random", vocab=vocab, backbone=LTP_SMALL_BACKBONE)


class GpuUtilisation:
    """``with GpuUtilisation(device) as busy:`` leaves ``busy.mean``, the mean GPU utilisation (%) over the block:
    NVML's own figure (share of time a kernel was running), sampled every 50 ms. None on CPU or without NVML
    (nvidia-ml-py)."""

    def __init__(self, device: str):
        self.mean: float | None = None
        self._samples: list[int] = []
        self._done = threading.Event()
        self._sampler = None
        if device == "cuda" and importlib.util.find_spec("pynvml") is not None:
            self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not self._done.wait(0.05):
            self._samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)

    def __enter__(self) -> GpuUtilisation:
        if self._sampler is not None:
            self._sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._sampler is not None:
            self._done.set()
            self._sampler.join()
            self.mean = sum(self._samples) / len(self._samples) if self._samples else None

    def figure(self) -> dict[str, float]:
        """The mean for a JSON line; nothing when there is none."""
        return {} if self.mean is None else {"gpu_utilisation_pct": round(self.mean, 1)}


class HostClock:
    """The calling thread's CPU seconds outside the model's forward passes (from the backbone's start to
    the cws head's end: hooks on the modules both LTP's loop and the fast path call). Both run all
    their host work on the calling thread (the tokenizer too: ``TOKENIZERS_PARALLELISM=false`` here,
    as ``RAYON_NUM_THREADS=1`` makes it in a one-thread actor), and the forward pass's other threads
    count as forward pass, so this is the host work of a run and nothing else."""

    def __init__(self, ltp):
        self.forward = 0.0
        self.host = 0.0  # of the last ``measuring`` block
        self._started = 0.0
        ltp.model.backbone.register_forward_pre_hook(self._start)
        ltp.model.task_heads["cws"].register_forward_hook(self._stop)

    def _start(self, *_) -> None:
        self._started = time.thread_time()

    def _stop(self, *_) -> None:
        self.forward += time.thread_time() - self._started

    @contextlib.contextmanager
    def measuring(self):
        forward, started = self.forward, time.thread_time()
        yield self
        self.host = time.thread_time() - started - (self.forward - forward)


def per_1k(seconds: float, sentences: int) -> float:
    return round(seconds / sentences * 1000, 3)


def fast_stage_rate(model: Path, sentences: list[str], device: str, batch_size: int, max_batch_tokens: int,
                    precision: str):
    """The segment stage's core (``LtpSegmenter``, words only: the fast path) in this process, fed
    ``batch_size`` sentences a call as the actor is: (sentences/s, sentences per CPU s, host CPU s per
    1,000 sentences outside the forward pass, GPU utilisation %)."""
    from operators.segment import LtpSegmenter

    segmenter = LtpSegmenter(SegmentConfig(model=str(model), num_gpus=1.0 if device == "cuda" else 0.0,
                                           max_batch_tokens=max_batch_tokens, precision=precision))
    clock = HostClock(segmenter._ltp)
    segmenter.segment(sentences[:16])  # warm-up: the first passes (on CUDA, its start-up)
    with GpuUtilisation(device) as busy, clock.measuring():
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(0, len(sentences), batch_size):
            segmenter.segment(sentences[i : i + batch_size])
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return len(sentences) / elapsed, len(sentences) / cpu, per_1k(clock.host, len(sentences)), busy.mean


def differing_share(ltp, sentences: list[str], device: str, precision: str) -> float:
    """The share of the sentences' pieces (as the stage cuts them) whose fast-path words under ``precision``
    differ from fp32's, same batches."""
    from operators.segment import model_pieces, piece_tokens
    from operators.segment.neural_cws import NeuralCws

    pieces = sorted((p for per_text in model_pieces(sentences, piece_tokens(ltp.tokenizer)) for p in per_text), key=lambda p: p.tokens)
    batches = [pieces[i : i + 64] for i in range(0, len(pieces), 64)]
    exact, half = ([w for batch in NeuralCws(ltp, device, p).words(batches) for w in batch] for p in ("fp32", precision))
    return round(sum(a != b for a, b in zip(exact, half, strict=True)) / max(1, len(pieces)), 4)


def direct_rate(ltp, sentences: list[str], batch_size: int, **kwargs) -> tuple[float, float, int]:
    """Sentences/s of the tight loop, sentences per CPU second (all its threads), and the number of words."""
    words = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(0, len(sentences), batch_size):
        words += sum(map(len, ltp.pipeline(sentences[i : i + batch_size], tasks=["cws"], **kwargs).cws))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return len(sentences) / elapsed, len(sentences) / cpu, words


def pipeline_rate(sentences: list[str], cfg: SegmentConfig, block_rows: int) -> tuple[float, float, int]:
    """Sentences/s through `segment.apply` (actor start-up included), sentences per CPU second of the actors'
    batches and the driver (start-up and Ray's own daemons not counted), and the words it produced."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray.data

    from operators import segment
    from operators.columns import TEXT, WORDS

    table = pa.table({TEXT: sentences})
    ds = ray.data.from_arrow([table.slice(i, block_rows) for i in range(0, len(sentences), block_rows)])
    started, cpu_started = time.perf_counter(), time.process_time()
    out = segment.apply(ds, cfg).materialize()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stage = "MapBatches(_segment_batch)" if runs_in_tasks(cfg) else "MapBatches(SegmenterActor)"
    cpu += operator_cpu_seconds(out.stats(), stage)
    words = sum(pc.sum(pc.list_value_length(block.column(WORDS))).as_py() for block in ray.get(out.to_arrow_refs()))
    return len(sentences) / elapsed, len(sentences) / cpu, words


def operator_cpu_seconds(stats: str, operator: str) -> float:
    """The "Remote cpu time: ... total" of one operator in Ray Data's stats text."""
    section = stats[stats.index(operator) :]
    match = re.search(r"Remote cpu time: .*?([\d.]+)(us|ms|s) total", section)
    if not match:
        raise ValueError(f"no remote cpu time for {operator} in Ray Data's stats")
    return float(match.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


def bench(name: str, model: Path, sentences: list[str], args, device: str) -> dict:
    import torch

    ltp = load_ltp(str(model), device)
    legacy = not hasattr(ltp, "tokenizer")
    clock = None if legacy else HostClock(ltp)
    direct_host: dict[str, float] = {}  # host CPU s per 1,000 sentences of each batch size's best run (neural)
    fast_best: tuple[float, float, float, float | None] = (0.0, 0.0, 0.0, None)
    modes = {"parallelism=False": {"parallelism": False}, "parallelism=True": {"parallelism": True}} if legacy else {
        "": {}
    }
    direct: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    direct_cpu: dict[str, dict[str, float]] = {mode: {} for mode in modes}
    direct_busy: dict[str, dict[str, float | None]] = {mode: {} for mode in modes}  # GPU utilisation of the best run
    pipeline_busy: float | None = None
    pipeline_best, pipeline_cpu, words_direct, words_pipeline = 0.0, 0.0, None, None
    startup, steady = float("inf"), 0.0
    # The pool shapes that measured fastest: on a CPU one single-threaded actor a core; on a GPU four actors share
    # it, so that one actor's Python (tokenizing, LTP's decoding) overlaps another's forward passes.
    gpu = device == "cuda"
    actors = args.actors or (GPU_ACTORS if gpu else (os.cpu_count() or 1))
    num_gpus = (args.gpus_per_actor or 1 / actors) if gpu else 0.0
    threads = args.threads_per_actor if gpu else 1
    pipeline_batch = args.batch_size or (GPU_BATCH_SIZE if gpu else CPU_BATCH_SIZE)
    block_rows = args.block_rows or (pipeline_batch if gpu else CPU_BLOCK_ROWS)
    cfg = SegmentConfig(
        model=str(model), num_gpus=num_gpus, num_actors=actors, batch_size=pipeline_batch,
        threads_per_actor=threads, max_batch_tokens=args.max_batch_tokens,
    )
    if not legacy:
        torch.set_num_threads(threads * actors)  # the direct loop gets the CPUs the pool gets
    for round_ in range(args.rounds):
        for mode, kwargs in modes.items():
            for batch_size in args.direct_batch_sizes:
                with GpuUtilisation(device) as busy, clock.measuring() if clock else contextlib.nullcontext():
                    rate, cpu_rate, words_direct = direct_rate(ltp, sentences, batch_size, **kwargs)
                if rate > direct[mode].get(str(batch_size), 0.0):
                    direct[mode][str(batch_size)] = rate
                    direct_busy[mode][str(batch_size)] = busy.mean
                    if clock:
                        direct_host[str(batch_size)] = per_1k(clock.host, len(sentences))
                direct_cpu[mode][str(batch_size)] = max(cpu_rate, direct_cpu[mode].get(str(batch_size), 0.0))
                print(json.dumps({"model": name, "round": round_, "direct": mode or "neural", "batch_size": batch_size,
                                  "sentences_per_s": round(rate, 1), "sentences_per_cpu_s": round(cpu_rate, 1),
                                  **busy.figure()}), flush=True)
        if not legacy:
            fast = fast_stage_rate(model, sentences, device, pipeline_batch, args.max_batch_tokens, args.precision)
            fast_best = max(fast_best, fast, key=lambda run: run[0])
            print(json.dumps({"model": name, "round": round_, "fast_stage": "in process", "sentences_per_s":
                              round(fast[0], 1), "sentences_per_cpu_s": round(fast[1], 1), "host_s_per_1k": fast[2],
                              **({"gpu_utilisation_pct": round(fast[3], 1)} if fast[3] is not None else {})}), flush=True)
        with GpuUtilisation(device) as busy:
            rate, cpu_rate, words_pipeline = pipeline_rate(sentences, cfg, block_rows)
        if rate > pipeline_best:
            pipeline_best, pipeline_busy = rate, busy.mean
        pipeline_cpu = max(pipeline_cpu, cpu_rate)
        startup_rate, _, _ = pipeline_rate(sentences[:actors], cfg, block_rows=1)  # one sentence per actor
        startup = min(startup, actors / startup_rate)
        if len(sentences) / rate > actors / startup_rate:
            steady = max(steady, len(sentences) / (len(sentences) / rate - actors / startup_rate))
        pool = f"tasks on {os.cpu_count()} CPUs" if runs_in_tasks(cfg) else f"{actors} actors"
        print(json.dumps({"model": name, "round": round_, "pipeline": pool, "sentences_per_s":
                          round(rate, 1), "sentences_per_cpu_s": round(cpu_rate, 1),
                          "startup_s": round(actors / startup_rate, 2), **busy.figure()}), flush=True)
    best_mode, best_batch = max(((m, b) for m in direct for b in direct[m]), key=lambda mb: direct[mb[0]][mb[1]])
    best = direct[best_mode][best_batch]
    result = {
        "bench": "segment",
        "model": name,
        "device": device,
        "sentences": len(sentences),
        "chars": sum(map(len, sentences)),
        "ratio_pipeline_vs_direct": round(pipeline_best / best, 3),
        "pipeline_sentences_per_s": round(pipeline_best, 1),
        "direct_sentences_per_s": round(best, 1),
        "direct_best": {"batch_size": int(best_batch), "mode": best_mode or "neural"},
        "direct": {mode or "neural": {b: round(r, 1) for b, r in rates.items()} for mode, rates in direct.items()},
        "pipeline": {
            "in_tasks": runs_in_tasks(cfg),
            "actors": actors, "threads_per_actor": threads, "num_gpus_per_actor": num_gpus,
            "batch_size": pipeline_batch, "block_rows": block_rows, "max_batch_tokens": args.max_batch_tokens,
            "startup_included": True,
            # the same run of one sentence per actor: actor start-up + model load, and the rate without it
            "startup_s": round(startup, 2),
            "steady_sentences_per_s_estimate": round(steady, 1),
        },
        # CPU seconds per sentence do not depend on how busy the machine is: the efficiency of the stage
        "cpu": {
            "pipeline_sentences_per_cpu_s": round(pipeline_cpu, 1),
            "direct_sentences_per_cpu_s": {mode or "neural": {b: round(r, 1) for b, r in rates.items()}
                                           for mode, rates in direct_cpu.items()},
            "efficiency_pipeline_vs_best_direct": round(
                pipeline_cpu / max(r for rates in direct_cpu.values() for r in rates.values()), 3),
        },
        **({"gpu_utilisation_pct": {
            "pipeline": round(pipeline_busy, 1),
            "direct": {mode or "neural": {batch: round(busy, 1) for batch, busy in runs.items() if busy is not None}
                       for mode, runs in direct_busy.items()},
        }} if pipeline_busy is not None else {}),
        "same_word_count": words_direct == words_pipeline if legacy else None,
        "ray_worker_niceness": int(os.environ["RAY_worker_niceness"]),
        "load_average": round(os.getloadavg()[0], 1),
    }
    if not legacy:  # issue #24: the stage's fast path against LTP's own loop at its best batch size
        result.update({
            "ratio_fast_vs_ltp": round(fast_best[0] / best, 3),
            "fast_sentences_per_s": round(fast_best[0], 1),
            "ltp_sentences_per_s": round(best, 1),
            "host_s_per_1k": {"ltp": direct_host[best_batch], "fast": fast_best[2]},
            "fast_sentences_per_cpu_s": round(fast_best[1], 1),
            **({"fast_gpu_utilisation_pct": round(fast_best[3], 1)} if fast_best[3] is not None else {}),
            "precision": args.precision,
        })
        if args.precision != "fp32":
            result["pieces_differing_from_fp32"] = differing_share(ltp, sentences, device, args.precision)
    if legacy:
        for mode in modes:
            result[f"ratio_vs_direct_{mode.replace('=', '_')}"] = round(pipeline_best / max(direct[mode].values()), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--neural", action="store_true", help="also bench a random-weight LTP/small-sized neural model")
    parser.add_argument("--no-legacy", action="store_true", help="skip the legacy model")
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"passes over the sentences (default: 60 legacy, {GPU_NEURAL_REPEAT} neural on a GPU)")
    parser.add_argument("--neural-sentences", type=int, default=None,
                        help=f"sentences for the neural run (default: {GPU_NEURAL_REPEAT} passes on a GPU, 256 on CPU)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--actors", type=int, default=None, help=f"default: one per CPU core (CPU), {GPU_ACTORS} (GPU)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"segment.batch_size (default: {CPU_BATCH_SIZE} CPU, {GPU_BATCH_SIZE} GPU)")
    parser.add_argument("--block-rows", type=int, default=None,
                        help=f"rows per Ray Data input block (default: {CPU_BLOCK_ROWS} CPU, the batch size GPU)")
    parser.add_argument("--threads-per-actor", type=int, default=2, help="CPU threads per GPU actor")
    parser.add_argument("--gpus-per-actor", type=float, default=None, help="default: the GPU shared by the actors")
    parser.add_argument("--max-batch-tokens", type=int, default=16384)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="the fast path's forward pass (neural); not fp32: also the share of pieces whose words differ")
    parser.add_argument("--direct-batch-sizes", type=int, nargs="+", default=list(DIRECT_BATCH_SIZES))
    args = parser.parse_args()

    import ray
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cores = os.cpu_count() or 1
    ray.init(address="local", log_to_driver=False, **LOCAL_RAY_OPTIONS)  # our own instance, as a build starts it
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # as the driver runs it
    context.enable_progress_bars = False
    sentences, source = bench_sentences()
    print(json.dumps({"sentences": len(sentences), "source": source, "device": device, "cores": cores}), flush=True)

    results = []
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        if not args.no_legacy:
            model = legacy_model(workdir)
            repeat = args.repeat or 60
            results.append(bench(f"legacy:{model.name}", model, sentences * repeat, args, "cpu"))
        if args.neural:
            passes = args.repeat or GPU_NEURAL_REPEAT
            count = args.neural_sentences or (len(sentences) * passes if device == "cuda" else 256)
            pool = (sentences * (count // len(sentences) + 1))[:count]
            results.append(bench("neural:ltp-small-size-random", neural_small_model(workdir), pool, args, device))
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""A small refresh against a full build of the same inputs (issue #23), side by side.

    python bench/refresh.py [--docs 2000] [--new 20] [--files 4] [--scale 1] [--change [--change-at N]] [--running-ray]

Input: the first ``--docs`` paragraphs of ../shared/data's CMRC2018 and C3 files (else the bundled
sample's records, repeated with a counter so that they stay distinct), spread over ``--files``
JSONL files, each grown to ``--scale`` times its records as bench/e2e.py grows its sizes (exact
and near duplicates, mosaics); then one more file of ``--new`` paragraphs that follow them, named
to sort after the others (with ``--change``, those paragraphs are appended to the last input file
instead: a changed file; with ``--change-at N`` too, to file N from 0, which may sort between
unchanged ones). Segmenter and vocab as in bench/e2e.py. Each build is ``python -m pipeline build``
in a child process, start-up included:

- ``first``: the corpus of ``--docs`` paragraphs (grown ``--scale`` times);
- ``refresh``: the same output after the new file appears (or the last file grows);
- ``full``: a new output from all the files, the refresh's inputs;
- ``floor``: a new output from one file of the first ``FLOOR_RECORDS`` paragraphs: what any build pays
  whatever its size (start-up, Ray, model loads, the commit and the exit; as in bench/e2e.py).

Prints one JSON line: the documents of the refreshed corpus (``docs_after``), the docs files the refresh
linked with their shard files instead of writing them (``docs_files_linked``), the seconds and CPU
seconds of each build, ``refresh_vs_full`` (refresh seconds / full seconds; issue #23 asks for at
most 0.35), the same for the seconds above the floor (``refresh_vs_full_above_floor``: the refresh's
own work against the full build's), the Ray Data executions each build ran (Ray Data's own log
line), and whether the refresh's docs, fates and shards equal the full build's.

``--running-ray``: every build joins one local Ray instance that the bench starts first and stops
last (``bench/running_ray.py``), so no build pays Ray's own start-up: what a refresh costs when Ray
already runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.e2e import FLOOR_RECORDS, RAY_DATA_EXECUTION, grow  # noqa: E402
from bench.measure import child_env, measured  # noqa: E402
from bench.running_ray import builds_env  # noqa: E402
from bench.shared_data import C3, CMRC, SAMPLE, emit, legacy_model, vocab_file  # noqa: E402


def paragraphs(count: int) -> list[str]:
    """``count`` distinct paragraphs: CMRC2018's, then C3's, else the bundled sample's with a counter."""
    if CMRC.exists() and C3.exists():
        lines = [line for path in (CMRC, C3) for line in path.read_text(encoding="utf-8").splitlines()]
        texts = list(dict.fromkeys(json.loads(line)["text"] for line in lines if line.strip()))
    else:
        records = [json.loads(line) for path in sorted(SAMPLE.glob("*.jsonl")) for line in path.read_text().splitlines()]
        base = [r["text"] for r in records if isinstance(r, dict) and isinstance(r.get("text"), str)]
        texts = [f"{base[i % len(base)]}（第{i}篇）" for i in range(count)]
    if len(texts) < count:
        raise SystemExit(f"only {len(texts)} paragraphs available, --docs/--new ask for {count}")
    return texts[:count]


def write_jsonl(path: Path, texts: list[str], mode: str = "w") -> None:
    """``texts`` as JSONL records, in a new file (``mode`` "w") or after the file's records ("a")."""
    with path.open(mode, encoding="utf-8") as file:
        file.writelines(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)


def build(workdir: Path, name: str, output: Path, model: Path, vocab: Path, env: dict[str, str],
          inputs: str = "in/*.jsonl") -> dict:
    config = workdir / f"{name}.json"
    config.write_text(json.dumps({
        "inputs": [str(workdir / inputs)], "output": str(output),
        "segment": {"model": str(model)}, "tokenize": {"tokenizer": str(vocab)},
    }))
    log = workdir / f"{name}.log"
    run = measured([sys.executable, "-m", "pipeline", "build", str(config), "--verbose"], log, env)
    run["ray_data_executions"] = log.read_text(encoding="utf-8", errors="replace").count(RAY_DATA_EXECUTION)
    return {key: run[key] for key in ("seconds", "cpu_s", "ray_data_executions")}


def same_tables(one: Path, other: Path) -> bool:
    from tests.contracts import read_shards, read_table

    return all(read_table(one, name).equals(read_table(other, name)) for name in ("docs", "fates")) and (
        read_shards(one)[0].equals(read_shards(other)[0])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2000, help="paragraphs in the first build")
    parser.add_argument("--new", type=int, default=20, help="paragraphs the refresh adds, in a new file")
    parser.add_argument("--files", type=int, default=4, help="files the first build's paragraphs are spread over")
    parser.add_argument("--scale", type=int, default=1, help="each file grown to this many times its records")
    parser.add_argument("--change", action="store_true", help="append the new paragraphs to the last file instead")
    parser.add_argument("--change-at", type=int, metavar="N", help="with --change: append to file N (from 0)")
    parser.add_argument("--running-ray", action="store_true", help="every build joins one Ray instance started first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, builds_env(child_env(), args.running_ray) as env:
        workdir = Path(scratch)
        base = workdir / "base"
        base.mkdir()
        texts = paragraphs(args.docs + args.new)
        per_file = -(-args.docs // args.files)
        for i in range(args.files):
            write_jsonl(base / f"part-{i:02d}.jsonl", texts[i * per_file : min((i + 1) * per_file, args.docs)])
        grow(sorted(base.glob("*.jsonl")), args.scale, workdir / "in")
        model, vocab = legacy_model(workdir), vocab_file()
        corpus = workdir / "corpus"
        first = build(workdir, "first", corpus, model, vocab, env)
        if args.change:
            changed = args.files - 1 if args.change_at is None else args.change_at
            write_jsonl(workdir / "in" / f"part-{changed:02d}.jsonl", texts[args.docs :], "a")
        else:
            write_jsonl(workdir / "in" / "zz-new.jsonl", texts[args.docs :])
        refresh = build(workdir, "refresh", corpus, model, vocab, env)
        full = build(workdir, "full", workdir / "full", model, vocab, env)
        (workdir / "floor-in").mkdir()
        write_jsonl(workdir / "floor-in" / "part-00.jsonl", texts[:FLOOR_RECORDS])
        floor = build(workdir, "floor", workdir / "floor", model, vocab, env, "floor-in/*.jsonl")
        refreshed = json.loads((corpus / "report.json").read_text(encoding="utf-8"))["refresh"]
        emit({
            "bench": "refresh", "docs": args.docs, "new": args.new, "files": args.files, "scale": args.scale,
            "change": args.change, "change_at": args.change_at,
            "running_ray": args.running_ray,
            "docs_after": json.loads((workdir / "full" / "report.json").read_text(encoding="utf-8"))["corpus"]["docs"],
            "docs_files_linked": refreshed["docs_files_linked"],
            "first": first, "refresh": refresh, "full": full, "floor": floor,
            "refresh_vs_full": round(refresh["seconds"] / full["seconds"], 3),
            "refresh_vs_full_above_floor": round(
                (refresh["seconds"] - floor["seconds"]) / (full["seconds"] - floor["seconds"]), 3
            ),
            "refresh_vs_full_cpu": round(refresh["cpu_s"] / full["cpu_s"], 3),
            "same_output": same_tables(corpus, workdir / "full"),
        })


if __name__ == "__main__":
    main()

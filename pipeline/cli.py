"""``python -m pipeline build CONFIG.yaml [--set dotted.key=value ...]``.

Exit status 0 on success; on a config, input or model problem, 2 with one line on stderr
that says what to fix.
"""

from __future__ import annotations

import argparse
import logging
import sys

from operators.read import InputError
from operators.segment import SegmentModelError
from operators.storage import CredentialsInUriError
from operators.tokenize import TokenizerLoadError
from pipeline.cluster import ClusterResourceError
from pipeline.config import ConfigError, load_config

USAGE_ERRORS = (
    ClusterResourceError, ConfigError, CredentialsInUriError, InputError, SegmentModelError, TokenizerLoadError
)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a corpus, or refresh the one already at the output")
    build.add_argument("config", help="YAML config file")
    build.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set tokenize.max_seq_len=128 (repeatable)",
    )
    build.add_argument(
        "--num-cpus", type=int, default=None, metavar="N",
        help="CPUs of the local Ray instance the build starts (default: all); ignored when RAY_ADDRESS is set",
    )
    repack = commands.add_parser("pack", help="re-pack a built corpus's docs into new shards (no segmentation)")
    repack.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    repack.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a tokenize.* or write.* key, e.g. --set tokenize.max_seq_len=512 (repeatable)",
    )
    inspect = commands.add_parser("inspect", help="print training examples with whole words marked, or one document's fate")
    inspect.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    inspect.add_argument("--n", type=int, default=5, help="training examples to print (default 5)")
    inspect.add_argument("--doc", metavar="DOC_ID", help="print this record's fate and words instead (a unique prefix will do)")
    inspect.add_argument("--tokenizer", help="decode with this tokenizer instead of the one named in the shards")
    inspect.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour whole words (auto: on a terminal)")
    verify = commands.add_parser("verify", help="check a built corpus: checksums, schemas, fates/docs/report identities")
    verify.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "inspect":
        from pipeline.inspect_corpus import run as inspect_run

        return inspect_run(args.output, n=args.n, doc=args.doc, colour=args.color, tokenizer=args.tokenizer)
    if args.command == "verify":
        from pipeline.verify import main as verify_main

        return verify_main(args.output)
    if args.command == "pack":
        from pipeline.repack import main as pack_main

        return pack_main(args.output, args.overrides)
    try:
        cfg = load_config(args.config, args.overrides)
        from pipeline.driver import build_corpus

        built = build_corpus(cfg, num_cpus=args.num_cpus)
    except USAGE_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from pipeline.report import human_report

    print(human_report(built), end="")
    print(f"wrote {cfg.output} (version {built['version']})")
    return 0

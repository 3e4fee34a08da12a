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
from operators.tokenize import TokenizerLoadError
from pipeline.config import ConfigError, load_config

USAGE_ERRORS = (ConfigError, InputError, SegmentModelError, TokenizerLoadError)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__.split("\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a corpus, or refresh the one already at the output")
    build.add_argument("config", help="YAML config file")
    build.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config key, e.g. --set tokenize.max_seq_len=128 (repeatable)",
    )
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        from pipeline.driver import build_corpus

        built = build_corpus(cfg)
    except USAGE_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from pipeline.report import human_report

    print(human_report(built), end="")
    print(f"wrote {cfg.output} (version {built['version']})")
    return 0

"""``python -m pipeline build CONFIG.yaml [--set dotted.key=value ...]``.

Exit status 0 on success; on a config, input or model problem, 2 with one line on stderr
that says what to fix.
"""

from __future__ import annotations

import argparse
import sys

from manifests.snapshot import VersionError, WriterLockError
from operators.read import InputError
from operators.segment.ltp_loading import SegmentModelError
from operators.storage import CredentialsInUriError
from operators.tokenize import TokenizerLoadError
from pipeline import console
from pipeline.cluster import ClusterResourceError
from pipeline.config import ConfigError, load_config

USAGE_ERRORS = (
    ClusterResourceError, ConfigError, CredentialsInUriError, InputError, SegmentModelError, TokenizerLoadError,
    WriterLockError,
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
    build.add_argument("--verbose", action="store_true", help="also print Ray Data's per-execution log lines")
    repack = commands.add_parser("pack", help="re-pack a built corpus's docs into new shards (no segmentation)")
    repack.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    repack.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a tokenize.* or write.* key, e.g. --set tokenize.max_seq_len=512 (repeatable)",
    )
    repack.add_argument("--verbose", action="store_true", help="also print Ray Data's per-execution log lines")
    inspect = commands.add_parser("inspect", help="print training examples with whole words marked, or one document's fate")
    inspect.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    inspect.add_argument("--n", type=int, default=5, help="training examples to print (default 5)")
    inspect.add_argument("--doc", metavar="DOC_ID", help="print this record's fate and words instead (a unique prefix "
                         "of 6+ characters will do, or FILE:RECORD, the record's row in its input file from 0)")
    inspect.add_argument("--tokenizer", help="decode with this tokenizer instead of the one named in the shards")
    inspect.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour whole words (auto: on a terminal)")
    inspect.add_argument("--version", type=int, help="read this version (current or archived; default: the current one)")
    verify = commands.add_parser("verify", help="check a built corpus: checksums, schemas, fates/docs/report identities")
    verify.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    verify.add_argument("--version", type=int, help="check this version (current or archived; default: the current one)")
    gc = commands.add_parser("gc", help="delete archived versions of a corpus beyond the newest N")
    gc.add_argument("output", help="the corpus directory or URI (holds manifest.json)")
    gc.add_argument("--keep", type=int, required=True, metavar="N", help="archived versions to keep (the current one is always kept)")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console.setup(verbose=getattr(args, "verbose", False), ray_data=args.command in ("build", "pack"))
    if args.command == "inspect":
        from inspection.inspect_corpus import run as inspect_run

        return inspect_run(args.output, n=args.n, doc=args.doc, colour=args.color, tokenizer=args.tokenizer,
                           version=args.version)
    if args.command == "verify":
        from inspection.verify import main as verify_main

        return verify_main(args.output, version=args.version)
    if args.command == "gc":
        return gc_main(args.output, args.keep)
    if args.command == "pack":
        return pack_main(args.output, args.overrides)
    try:
        cfg = load_config(args.config, args.overrides)
        from pipeline.driver import build_corpus

        built = build_corpus(cfg, num_cpus=args.num_cpus)
    except USAGE_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from pipeline.report import human_report

    if built.get("refresh", {}).get("noop"):
        print(f"up to date: {cfg.output} (version {built['version']}): {built['refresh']['reason']}; nothing written")
        return 0
    print(human_report(built), end="")
    if built.get("refresh"):
        print(refresh_line(built["refresh"]))
    print(f"wrote {cfg.output} (version {built['version']})")
    return 0


def refresh_line(refresh: dict) -> str:
    """What a build did to the corpus, from report.json's ``refresh``: the files by what happened to
    them, the stages whose settings changed, what was read and segmented, and the duplicates kept in
    the place of documents the refresh retracted (read again from their unchanged files)."""
    files, docs = refresh["files"], refresh["docs"]
    parts = [
        f"{refresh['mode']}: {files['new']} new, {files['changed']} changed, {files['removed']} removed, "
        f"{files['unchanged']} unchanged files",
    ]
    if refresh.get("changed_stages"):
        parts.append(f"settings changed: {', '.join(refresh['changed_stages'])}")
    parts.append(f"{refresh['records_read']:,} records read")
    parts.append(f"{docs['segmented']:,} docs segmented, {docs['reused']:,} from the cache")
    if refresh.get("promoted"):
        parts.append(f"{refresh['promoted']:,} duplicates kept in place of retracted documents "
                     f"({refresh['files_reread']:,} unchanged files read again)")
    return "; ".join(parts)


def pack_main(output: str, overrides: list[str]) -> int:
    """The ``pack`` subcommand: 0 on success, 2 with one line on stderr on a usage problem."""
    from pipeline.repack import RepackError, repack_corpus  # imports Ray

    try:
        committed = repack_corpus(output, overrides)
    except (*USAGE_ERRORS, RepackError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    corpus, packed = committed["corpus"], committed["packed"]
    print(
        f"packed {corpus['examples']} examples, {corpus['tokens']} tokens in {corpus['shards']} shards "
        f"(max_seq_len {packed['max_seq_len']}, packing {packed['packing']}) in {packed['seconds']} s"
    )
    print(f"wrote {output} (version {committed['version']})")
    return 0


def gc_main(output: str, keep: int) -> int:
    """The ``gc`` subcommand: 0 on success, 2 with one line when there is no corpus or --keep is negative."""
    from manifests import snapshot

    try:
        removed = snapshot.gc(output, keep)
    except (VersionError, ValueError, CredentialsInUriError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    kept = snapshot.archived_versions(output)
    print(f"removed {len(removed)} archived version(s) {removed}; archived now: {kept}")
    return 0

"""``python -m pipeline inspect OUT [--n 5] [--doc DOC_ID]``: look inside a built corpus.

Without ``--doc``: the first ``n`` training examples, decoded with the tokenizer named in the
shards' metadata, whole words marked: words are separated by spaces and a word of several
tokens (masked together) is in brackets; on a terminal, whole words alternate colours instead.
With ``--doc``: that record's fate; for a kept document its words; for a duplicate the
document that was kept in its place, with the differences between the two texts.

Only what is asked for is read: shards are streamed batch by batch (memory-mapped when local)
until ``n`` examples are out, and a document is found by a filtered scan of the fates and
docs files of the current snapshot. The duplicate's own text is not stored in the output, so
it is re-read from its source record and normalized with the build's settings.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from manifests import snapshot
from operators import storage
from operators.columns import (
    DETAIL,
    DOC_ID,
    EXACT_DUP,
    FATE,
    INPUT_IDS,
    KEPT,
    NEAR_DUP,
    RECORD,
    SOURCE,
    TEXT,
    WORD_START,
    WORDS,
)
from operators.read import InputError, list_inputs

STRUCTURAL = ("[CLS]", "[SEP]", "[PAD]", "[MASK]")
CONTINUATION = "##"
MIN_PREFIX = 6  # a --doc shorter than this must match a doc_id exactly

RESET, DIM, BOLD = "\033[0m", "\033[2m", "\033[1m"
WORD_COLOURS = ("\033[36m", "\033[33m")  # cyan, yellow: neighbouring whole words never share one
DELETED, INSERTED = "\033[31m", "\033[32m"


class InspectError(ValueError):
    """The output cannot be inspected as asked; the message is one line, fit for the CLI."""


@dataclass(frozen=True)
class Style:
    """Plain text marks whole words with spaces and brackets; colour alternates per word."""

    colour: bool = False

    def paint(self, text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if self.colour else text

    def words(self, units: list[tuple[str, str, int]]) -> str:
        """``units``: (kind, text, tokens) with kind ``special``, ``word`` or ``cut`` (a word cut by packing)."""
        if self.colour:
            out, k = [], 0
            for kind, text, _ in units:
                if kind == "special":
                    out.append(self.paint(text, DIM))
                    continue
                out.append(self.paint(("…" if kind == "cut" else "") + text, WORD_COLOURS[k % 2]))
                k += 1
            return "".join(out)
        return " ".join(
            text if kind == "special" or (kind == "word" and n == 1) else f"[{'…' if kind == 'cut' else ''}{text}]"
            for kind, text, n in units
        )

    def diff(self, old: str, new: str) -> str:
        """``new`` with what ``old`` had instead marked ``[-old-]{+new+}`` (or in red and green)."""
        out = []
        for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if op == "equal":
                out.append(new[b0:b1])
                continue
            if a1 > a0:
                out.append(self.paint(old[a0:a1], DELETED) if self.colour else f"[-{old[a0:a1]}-]")
            if b1 > b0:
                out.append(self.paint(new[b0:b1], INSERTED) if self.colour else f"{{+{new[b0:b1]}+}}")
        return "".join(out)


# ---- the snapshot and its files ---------------------------------------------------------------


def current_files(output: str, folder: str) -> list[str]:
    """The files of ``folder`` listed in the current manifest (relative paths), in order."""
    manifest = snapshot.read_manifest(output)
    if manifest is None:
        raise InspectError(f"no corpus at {output}: it has no {snapshot.MANIFEST}")
    return [entry["path"] for entry in manifest["files"] if entry["path"].startswith(f"{folder}/")]


def _scan(output: str, folder: str, column: str, value: str, columns: list[str] | None = None) -> pa.Table:
    """Rows of the current ``folder`` tables whose ``column`` is ``value``, or starts with it (a prefix
    of at least ``MIN_PREFIX`` characters). Streamed with the filter pushed into the scan."""
    paths = current_files(output, folder)
    if not paths:
        return pa.table({})
    filesystem, root = storage.resolve(output)
    dataset = pads.dataset([f"{root}/{p}" for p in paths], filesystem=filesystem, format="parquet")
    field = pads.field(column)
    condition = pc.starts_with(field, value) if len(value) >= MIN_PREFIX else field == value
    return dataset.to_table(filter=condition, columns=columns)


# ---- examples ---------------------------------------------------------------------------------


def iter_shard_batches(output: str) -> Iterator[tuple[str, pa.Schema, pa.RecordBatch]]:
    """(shard path, schema, record batch) of the current shards, one batch at a time."""
    filesystem, root = storage.resolve(output)
    for relative in current_files(output, "shards"):
        inner = f"{root}/{relative}"
        local = isinstance(filesystem, pafs.LocalFileSystem)
        source = pa.memory_map(inner) if local else filesystem.open_input_stream(inner)
        with source, pa.ipc.open_stream(source) as reader:
            for batch in reader:
                yield relative, reader.schema, batch


def load_vocab(metadata: dict[str, str], override: str | None = None) -> list[str]:
    """Tokens by id, from ``override`` or else the tokenizer the shards name; checked against their vocab sha256."""
    from operators.tokenize import TokenizerLoadError, load_tokenizer, vocab_in_id_order, vocab_sha256

    spec = override or metadata.get("tokenizer")
    if not spec:
        raise InspectError("the shards' metadata names no tokenizer: pass --tokenizer")
    try:
        tokenizer = load_tokenizer(spec)
    except TokenizerLoadError as error:
        raise InspectError(
            f"{error} (the tokenizer the shards were made with; pass --tokenizer to use another copy)"
        ) from error
    expected = metadata.get("vocab_sha256")
    if expected and vocab_sha256(tokenizer) != expected:
        print(f"warning: vocab of {spec} differs from the one the shards were made with (sha256)", file=sys.stderr)
    return vocab_in_id_order(tokenizer)


def whole_words(ids: list[int], starts: list[bool], vocab: list[str]) -> list[tuple[str, str, int]]:
    """Group an example's tokens into (kind, text, token count): each structural special token on
    its own, and each whole word (a word start and the tokens after it that are not word starts).
    A first word that starts inside a word (cut by packing) is ``cut``. ``##`` is dropped from
    continuation pieces; two Latin pieces that were separate words of the text keep a space."""
    units: list[list[Any]] = []
    open_word = False
    for token_id, start in zip(ids, starts):
        token = vocab[token_id] if 0 <= token_id < len(vocab) and vocab[token_id] else f"<{token_id}>"
        if token in STRUCTURAL:
            units.append(["special", token, 1])
            open_word = False
        elif start or not open_word:
            units.append(["word" if start else "cut", token.removeprefix(CONTINUATION), 1])
            open_word = True
        else:
            piece = token.removeprefix(CONTINUATION)
            text = units[-1][1]
            joined = token.startswith(CONTINUATION) or not (
                text[-1:].isascii() and text[-1:].isalnum() and piece[:1].isascii() and piece[:1].isalnum()
            )
            units[-1][1] = text + piece if joined else f"{text} {piece}"
            units[-1][2] += 1
    return [(kind, text, n) for kind, text, n in units]


def show_examples(output: str, n: int, style: Style, out: TextIO, tokenizer: str | None = None) -> int:
    """Print the first ``n`` examples; returns how many were printed."""
    vocab, shown = None, 0
    if n <= 0:
        return 0
    for relative, schema, batch in iter_shard_batches(output):
        if vocab is None:
            metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
            vocab = load_vocab(metadata, tokenizer)
            legend = "alternating colours" if style.colour else "separated by spaces; [..] = one word of several tokens"
            print(
                f"tokenizer {tokenizer or metadata.get('tokenizer')} · "
                f"max_seq_len {metadata.get('max_seq_len', '?')} · whole words {legend}",
                file=out,
            )
        ids_column, starts_column = batch.column(INPUT_IDS), batch.column(WORD_START)
        for row in range(min(batch.num_rows, n - shown)):
            ids, starts = ids_column[row].values.to_pylist(), starts_column[row].values.to_pylist()
            units = whole_words(ids, starts, vocab)
            words = [u for u in units if u[0] != "special"]
            several = sum(1 for u in words if u[2] > 1)
            print(
                f"\n{style.paint(f'{relative} #{shown}', BOLD)} · {len(ids)} tokens · {len(words)} whole words "
                f"({several} of several tokens)",
                file=out,
            )
            print(style.words(units), file=out)
            shown += 1
        if shown >= n:
            break
    if vocab is None:
        print("no training examples in this snapshot", file=out)
    return shown


# ---- one document -----------------------------------------------------------------------------


def find_fate(output: str, doc: str) -> dict[str, Any]:
    """The fates row of ``doc``: a doc_id, a prefix of one, or ``FILE:RECORD`` (the record's row in its
    input file, from 0, as the fates table counts; doc_ids never hold a colon)."""
    file, colon, record = doc.rpartition(":")
    if colon and record.isdigit():
        return _fate_of_record(output, file, int(record))
    rows = _scan(output, "fates", DOC_ID, doc).to_pylist()
    if not rows:
        short = f" (a prefix needs at least {MIN_PREFIX} characters)" if len(doc) < MIN_PREFIX else ""
        raise InspectError(f"no record with doc_id {doc!r} in {output}{short}")
    if len({row[DOC_ID] for row in rows}) > 1:
        some = ", ".join(sorted({row[DOC_ID] for row in rows})[:5])
        raise InspectError(f"doc_id prefix {doc!r} is ambiguous: {some}, ...")
    return rows[0]


def _fate_of_record(output: str, file: str, record: int) -> dict[str, Any]:
    try:
        (source,) = list_inputs([file])  # the URI the build read it under
    except (InputError, ValueError) as error:
        raise InspectError(f"{file}: {error}") from None
    paths = current_files(output, "fates")
    filesystem, root = storage.resolve(output)
    dataset = pads.dataset([f"{root}/{p}" for p in paths], filesystem=filesystem, format="parquet")
    rows = dataset.to_table(filter=(pads.field(SOURCE) == source) & (pads.field(RECORD) == record)).to_pylist()
    if not rows:
        raise InspectError(f"no record {record} of {source} in {output}")
    return rows[0]


def find_doc(output: str, doc_id: str) -> dict[str, Any] | None:
    rows = _scan(output, "docs", DOC_ID, doc_id).to_pylist()
    return next((row for row in rows if row[DOC_ID] == doc_id), None)


def source_text(output: str, source: str, record: int) -> str | None:
    """A record's text re-read from its source and normalized as the build did, or None if unreachable.

    Streams the source file up to that record (one file, never the corpus)."""
    from operators.normalize import NormalizeConfig, Normalizer
    from operators.read import ReadConfig, RecordReader

    config = (snapshot.read_manifest(output) or {}).get("config", {})
    try:
        reader = RecordReader(ReadConfig(**config.get("read", {})))
        normalizer = Normalizer(NormalizeConfig(**config.get("normalize", {})))
        for row in reader.records(source):
            if row[RECORD] == record:
                return normalizer.normalize(row["raw"])[0] if row["raw"] is not None else None
            if row[RECORD] > record:
                break
    except Exception:  # noqa: BLE001 - the source may be gone or moved; the output still answers
        return None
    return None


def show_doc(output: str, doc: str, style: Style, out: TextIO) -> None:
    row = find_fate(output, doc)
    doc_id, fate, detail = row[DOC_ID], row[FATE], row[DETAIL]
    print(f"{style.paint('doc_id', BOLD)} {doc_id}", file=out)
    print(f"source {row[SOURCE]} record {row[RECORD]}", file=out)
    if fate == KEPT:
        print(f"fate   {fate}", file=out)
        _print_doc(output, doc_id, style, out)
        return
    if fate not in (EXACT_DUP, NEAR_DUP):
        print(f"fate   {fate}: {detail}", file=out)
        text = source_text(output, row[SOURCE], row[RECORD])
        if text is not None:
            print(f"text   ({len(text)} chars, normalized from the source)\n{text}", file=out)
        return
    print(f"fate   {fate} of {detail}", file=out)
    kept = _scan(output, "fates", DOC_ID, detail).to_pylist()
    if kept:
        print(
            f"\n{style.paint('kept in its place', BOLD)}: {detail} (source {kept[0][SOURCE]} record {kept[0][RECORD]})",
            file=out,
        )
    kept_doc = _print_doc(output, detail, style, out)
    text = source_text(output, row[SOURCE], row[RECORD])
    if text is None:
        print("\n(the duplicate's own text is not in the output, and its source could not be read)", file=out)
    elif kept_doc is not None and text == kept_doc[TEXT]:
        print("\n(the duplicate's normalized text, re-read from the source, is identical)", file=out)
    elif kept_doc is not None:
        marks = (
            "red: only in the duplicate, green: only in the kept document"
            if style.colour
            else "[-only in the duplicate-] {+only in the kept document+}"
        )
        print(f"\n{style.paint('differences', BOLD)} ({marks}; normalized, re-read from the source)", file=out)
        print(style.diff(text, kept_doc[TEXT]), file=out)


def _print_doc(output: str, doc_id: str, style: Style, out: TextIO) -> dict[str, Any] | None:
    doc = find_doc(output, doc_id)
    if doc is None:
        print(f"(no docs row for {doc_id})", file=out)
        return None
    words = doc[WORDS] or []
    units = [("word", word, len(word)) for word in words]
    print(f"text   {len(doc[TEXT])} chars, {len(words)} words", file=out)
    print(style.words(units), file=out)
    return doc


def run(
    output: str,
    n: int = 5,
    doc: str | None = None,
    colour: str = "auto",
    tokenizer: str | None = None,
    out: TextIO | None = None,
    version: int | None = None,
) -> int:
    """The ``inspect`` command; returns the exit status (2 with one line on stderr when it cannot).

    ``version``: read that version, current or archived (``snapshot.resolve``: an archived version
    is a corpus folder of its own under ``versions/``)."""
    out = out or sys.stdout
    style = Style(colour=colour == "always" or (colour == "auto" and out.isatty()))
    try:
        if version is not None:
            try:
                output = snapshot.resolve(output, version)[0]
            except snapshot.VersionError as error:
                raise InspectError(str(error)) from None
        if doc:
            show_doc(output, doc.strip(), style, out)
        else:
            show_examples(output, n, style, out, tokenizer)
    except InspectError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0

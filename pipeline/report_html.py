"""``report.html``: one self-contained page (no scripts, fonts or links to fetch) for people.

It renders numbers that are already in ``report.json`` (plus examples per shard from the
manifest's file list and a few duplicate pairs), so nothing here touches the corpus. Every
number cell carries a ``data-key`` naming its place in ``report.json`` (``fates.kept``,
``stages.dedup.seconds``), which is how tests check the page against the JSON. Plots are SVG
bar charts (``report_charts``) embedded as ``data:`` URIs.
"""

from __future__ import annotations

import base64
import difflib
import html
from typing import Any

from operators.columns import EXACT_DUP, FATES, FILTERED, KEPT, NEAR_DUP, RECORD, REJECTED, SOURCE, TEXT
from pipeline import histograms, report_charts

FATE_COLOURS = {KEPT: "#2e7d32", EXACT_DUP: "#ef6c00", NEAR_DUP: "#f9a825", FILTERED: "#757575", REJECTED: "#c62828"}
BEFORE_COLOUR, AFTER_COLOUR, ACCENT = "#b0bec5", "#1565c0", "#1565c0"
EQUAL_CONTEXT = 60  # characters kept on each side of a long identical stretch in a duplicate pair
MAX_SHARD_BARS = 120  # more shards than this: a histogram of examples per shard instead of one bar each
MAX_SHARD_ROWS = 1000  # shards listed one per row; the manifest lists them all

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --accent: #1565c0; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans CJK SC", "PingFang SC",
  "Microsoft YaHei", "Helvetica Neue", Arial, sans-serif; }
header { background: #102a43; color: #f0f4f8; padding: 20px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .meta { color: #bcccdc; font-size: 13px; }
header .meta code { color: #f0f4f8; }
nav { padding: 8px 32px; background: #243b53; font-size: 13px; }
nav a { color: #d9e2ec; margin-right: 16px; text-decoration: none; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 32px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; border-left: 4px solid var(--accent); }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.row > * { flex: 1 1 360px; min-width: 0; }
table { border-collapse: collapse; font-size: 14px; margin: 4px 0 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left; }
th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.sub { padding-left: 28px; color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
img.plot { max-width: 100%; height: auto; display: block; }
.note { color: var(--muted); font-size: 13px; }
.empty { color: var(--muted); font-style: italic; }
details summary { cursor: pointer; color: var(--accent); font-size: 13px; }
.pair { border: 1px solid var(--line); border-radius: 6px; margin: 12px 0; }
.pair .head { background: var(--bg); padding: 6px 12px; font-size: 13px; color: var(--muted); }
.pair .sides { display: grid; grid-template-columns: 1fr 1fr; }
.pair .side { padding: 8px 12px; white-space: pre-wrap; word-break: break-all; font-size: 14px; }
.pair .side + .side { border-left: 1px solid var(--line); }
.pair .side .who { font-size: 12px; color: var(--muted); margin-bottom: 4px; white-space: normal; }
del { background: #ffcdd2; color: #b71c1c; text-decoration: line-through; }
ins { background: #c8e6c9; color: #1b5e20; text-decoration: none; }
.skip { color: var(--muted); background: var(--bg); font-size: 12px; border-radius: 3px; padding: 0 4px; }
code { font-size: 12px; }
"""


def render(report: dict[str, Any], files: list[dict[str, Any]], pairs: list[dict[str, Any]], title: str = "") -> str:
    """The whole page. ``files``: manifest entries (``path``, ``rows``); ``pairs``: from ``report.duplicate_pairs``."""
    shards = [f for f in files if f["path"].startswith("shards/")]
    sections = [
        ("summary", "Summary", _summary(report)),
        ("fates", "Fates", _fates(report)),
        ("lengths", "Document length", _lengths(report)),
        ("opencc", "OpenCC conversion", _opencc(report)),
        ("dedup", "Duplicates", _dedup(report, pairs)),
        ("tokens", "Tokens per document", _tokens(report)),
        ("shards", "Examples per shard", _shards(shards)),
        ("stages", "Stage throughput", _stages(report)),
    ]
    tokenizer = report.get("tokenizer", {})
    meta = (
        f"version <code>{report.get('version', '?')}</code> · built in {report.get('seconds', 0):,.1f} s · "
        f"input {report.get('input_bytes', 0) / 1e6:,.2f} MB in {report.get('inputs', 0)} files · "
        f"tokenizer <code>{_e(tokenizer.get('spec', '?'))}</code> · "
        f"segmenter <code>{_e(report.get('segment_model', '?'))}</code>"
    )
    nav = "".join(f'<a href="#{anchor}">{name}</a>' for anchor, name, _ in sections)
    body = "".join(f'<section id="{anchor}"><h2>{name}</h2>{content}</section>' for anchor, name, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Corpus report · {_e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>Corpus report</h1><div class="meta"><code>{_e(title)}</code> · {meta}</div></header>'
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )


# ---- sections ---------------------------------------------------------------------------------


def _summary(report: dict[str, Any]) -> str:
    fates, corpus = report["fates"], report["corpus"]
    cards = [
        ("records in", "fates.records", fates["records"], ACCENT),
        *((fate.replace("_", " "), f"fates.{fate}", fates[fate], FATE_COLOURS[fate]) for fate in FATES),
        *(
            (name, f"corpus.{name}", corpus.get(name, 0), "#486581")
            for name in ("docs", "words", "tokens", "examples", "shards")
        ),
    ]
    html_cards = "".join(
        f'<div class="card" style="border-left-color:{colour}"><div class="label">{label}</div>'
        f'<div class="value" data-key="{key}">{value:,}</div></div>'
        for label, key, value, colour in cards
    )
    return f'<div class="cards">{html_cards}</div>'


def _fates(report: dict[str, Any]) -> str:
    fates = report["fates"]
    records = fates["records"]
    rows = []
    for fate in FATES:
        swatch = f'<span class="swatch" style="background:{FATE_COLOURS[fate]}"></span>'
        rows.append(
            f"<tr><td>{swatch}{fate}</td>{_num(f'fates.{fate}', fates[fate])}"
            f"<td class=n>{_pct(fates[fate], records)}</td></tr>"
        )
        for label, n in fates.items():
            if label.startswith(f"{fate}."):
                reason = label.split(".", 1)[1]
                rows.append(
                    f'<tr><td class="sub">{_e(reason)}</td>{_num(f"fates.{label}", n)}'
                    f"<td class=n>{_pct(n, records)}</td></tr>"
                )
    rows.append(f"<tr><th>records</th>{_num('fates.records', records)}<td></td></tr>")
    table = (
        f"<table><tr><th>fate / reason</th><th class=n>records</th><th class=n>share</th></tr>{''.join(rows)}</table>"
    )
    plot = _plot_fates(fates)
    unreadable = report.get("unreadable_files") or []
    if unreadable:
        items = "".join(
            f"<tr><td><code>{_e(r['source'])}</code></td><td>{_e(r['reason'])}</td></tr>" for r in unreadable
        )
        table += f"<h3>Unreadable files</h3><table><tr><th>file</th><th>reason</th></tr>{items}</table>"
    return f'<div class="row"><div>{table}</div><div>{plot}</div></div>'


def _lengths(report: dict[str, Any]) -> str:
    lengths = report.get("lengths")
    if not lengths:
        return _empty("No length histograms in this report.")
    before, after = lengths["before"], lengths["after"]
    stats = (
        "<table><tr><th></th><th class=n>documents</th><th class=n>characters</th><th class=n>mean</th></tr>"
        f"<tr><td>before: every normalized record</td>{_num('lengths.before.total', before['total'])}"
        f"{_num('lengths.before.sum', before['sum'])}<td class=n>{_mean(before)}</td></tr>"
        f"<tr><td>after: kept documents</td>{_num('lengths.after.total', after['total'])}"
        f"{_num('lengths.after.sum', after['sum'])}<td class=n>{_mean(after)}</td></tr></table>"
    )
    plot = _plot_histograms(
        [("before", before, BEFORE_COLOUR), ("after", after, AFTER_COLOUR)], "characters per document"
    )
    note = (
        '<p class="note">Before: the normalized text of every record that was read (filtered and duplicate '
        "records included). After: the documents kept in the corpus. Ten bins per decade.</p>"
    )
    tables = _bins_table("lengths.before", before) + _bins_table("lengths.after", after)
    return f"{note}{plot}{stats}{tables}"


def _opencc(report: dict[str, Any]) -> str:
    opencc = report.get("opencc")
    if not opencc:
        return _empty("No OpenCC counts in this report.")
    return (
        "<table>"
        f"<tr><td>characters changed</td>{_num('opencc.chars_changed', opencc['chars_changed'])}"
        f"<td class=n>{_pct(opencc['chars_changed'], opencc['chars'])} of characters</td></tr>"
        f"<tr><td>records changed</td>{_num('opencc.records_changed', opencc['records_changed'])}"
        f"<td class=n>{_pct(opencc['records_changed'], opencc['records'])} of records</td></tr>"
        f"<tr><td>normalized records</td>{_num('opencc.records', opencc['records'])}<td></td></tr>"
        f"<tr><td>normalized characters</td>{_num('opencc.chars', opencc['chars'])}<td></td></tr>"
        "</table>"
        '<p class="note">Characters that the OpenCC conversion (normalize.opencc) replaced, counted per record '
        "against its cleaned text, over every record that was read (duplicates and filtered records included).</p>"
    )


def _dedup(report: dict[str, Any], pairs: list[dict[str, Any]]) -> str:
    clusters = report.get("dedup_clusters")
    fates = report["fates"]
    summary = (
        "<table>"
        f"<tr><td>exact duplicates</td>{_num('fates.exact_dup', fates[EXACT_DUP])}</tr>"
        f"<tr><td>near duplicates</td>{_num('fates.near_dup', fates[NEAR_DUP])}</tr>"
    )
    if not clusters:
        return summary + "</table>" + _empty("No cluster sizes in this report.")
    summary += (
        "<tr><td>clusters (a kept document and its duplicates)</td>"
        f"{_num('dedup_clusters.clusters', clusters['clusters'])}</tr>"
        f"<tr><td>duplicates in clusters</td>{_num('dedup_clusters.duplicates', clusters['duplicates'])}</tr></table>"
    )
    if not clusters["sizes"]:
        return summary + _empty("No duplicates were found: every document that passed the filters was kept.")
    sizes = "".join(
        f"<tr><td class=n>{size}</td>{_num(f'dedup_clusters.size.{size}', n)}</tr>" for size, n in clusters["sizes"]
    )
    size_table = f"<table><tr><th class=n>cluster size</th><th class=n>clusters</th></tr>{sizes}</table>"
    plot = _plot_bars(
        [str(size) for size, _ in clusters["sizes"]],
        [n for _, n in clusters["sizes"]],
        "cluster size (documents)",
        "clusters",
        FATE_COLOURS[NEAR_DUP],
    )
    shown = "".join(_pair(pair) for pair in pairs) or _empty("No pair could be fetched.")
    what = "near-duplicate" if pairs and pairs[0]["fate"] == NEAR_DUP else "duplicate"
    return (
        f'<div class="row"><div>{summary}{size_table}</div><div>{plot}</div></div>'
        f"<h3>A few {what} pairs</h3>"
        '<p class="note">The first in input order, normalized text. '
        "<del>struck out</del>: only in the duplicate; <ins>green</ins>: only in the kept document.</p>"
        f"{shown}"
    )


def _tokens(report: dict[str, Any]) -> str:
    per_doc = report.get("tokens_per_doc")
    if not per_doc:
        return _empty("No token histogram in this report.")
    stats = (
        "<table><tr><th></th><th class=n>documents</th><th class=n>tokens</th><th class=n>mean</th></tr>"
        f"<tr><td>kept documents</td>{_num('tokens_per_doc.total', per_doc['total'])}"
        f"{_num('tokens_per_doc.sum', per_doc['sum'])}<td class=n>{_mean(per_doc)}</td></tr></table>"
        '<p class="note">WordPiece tokens of each document\'s text, before packing adds [CLS] and [SEP].</p>'
    )
    plot = _plot_histograms([("tokens", per_doc, AFTER_COLOUR)], "tokens per document")
    return f"{plot}{stats}{_bins_table('tokens_per_doc', per_doc)}"


def _shards(shards: list[dict[str, Any]]) -> str:
    if not shards:
        return _empty("No shard was written.")
    rows = [int(f.get("rows", 0)) for f in shards]
    names = [f["path"].removeprefix("shards/") for f in shards]
    if len(shards) <= MAX_SHARD_BARS:
        plot = _plot_bars(
            [str(i) for i in range(len(rows))],
            rows,
            "shard (in file order)",
            "examples",
            ACCENT,
            every=max(1, len(rows) // 20),
        )
    else:
        plot = _plot_histograms([("examples", histograms.of_values(rows), ACCENT)], "examples per shard", "shards")
    lines = "".join(
        f"<tr><td class=n>{i}</td><td><code>{_e(name)}</code></td>{_num(f'shards.{name}.rows', n)}"
        f"{_num(f'shards.{name}.tokens', int(f.get('tokens', 0)))}"
        f"<td class=n>{int(f.get('size', 0)) / 1e6:,.2f}</td></tr>"
        for i, (name, n, f) in enumerate(zip(names[:MAX_SHARD_ROWS], rows, shards))
    )
    more = len(rows) - MAX_SHARD_ROWS
    summary = f"the first {MAX_SHARD_ROWS:,} shards (manifest.json lists all)" if more > 0 else "every shard"
    listing = (
        f"<details><summary>{summary}</summary><table><tr><th class=n>#</th><th>file</th><th class=n>examples</th>"
        f"<th class=n>tokens</th><th class=n>MB</th></tr>{lines}</table></details>"
    )
    stats = (
        "<table>"
        f"<tr><td>shards</td>{_num('corpus.shards', len(rows))}</tr>"
        f"<tr><td>examples</td>{_num('corpus.examples', sum(rows))}</tr>"
        f"<tr><td>fewest examples in a shard</td><td class=n>{min(rows):,}</td></tr>"
        f"<tr><td>most examples in a shard</td><td class=n>{max(rows):,}</td></tr></table>"
    )
    return f'<div class="row"><div>{stats}{listing}</div><div>{plot}</div></div>'


def _stages(report: dict[str, Any]) -> str:
    stages = report.get("stages", {})
    total = report.get("seconds", 0.0)
    rows = "".join(
        f"<tr><td>{_e(stage)}</td>{_num(f'stages.{stage}.seconds', row['seconds'], 2)}"
        f"<td class=n>{_pct(row['seconds'], total)}</td>{_num(f'stages.{stage}.mb_per_s', row['mb_per_s'], 3)}</tr>"
        for stage, row in stages.items()
    )
    outside = total - sum(row["seconds"] for row in stages.values())
    if outside >= 0.01:
        rows += (
            f"<tr><td>(between stages: counts, checksums)</td><td class=n>{outside:,.2f}</td>"
            f"<td class=n>{_pct(outside, total)}</td><td></td></tr>"
        )
    megabytes = report.get("input_bytes", 0) / 1e6
    rows += (
        f"<tr><th>whole build</th>{_num('seconds', total, 2)}<td></td>"
        f"<td class=n>{(megabytes / total if total else 0):,.3f}</td></tr>"
    )
    table = (
        "<table><tr><th>stage</th><th class=n>seconds</th><th class=n>share</th><th class=n>MB/s</th></tr>"
        f"{rows}</table>"
        f'<p class="note">MB/s: input megabytes ({_num_text("input_bytes", report.get("input_bytes", 0))} bytes) '
        "divided by the stage's wall time. Stages run one after another.</p>"
    )
    plot = (
        _img(report_charts.rows(list(stages), [row["seconds"] for row in stages.values()], [ACCENT] * len(stages),
                                "seconds", ",.1f"), "seconds")
        if stages
        else ""
    )
    return f'<div class="row"><div>{table}</div><div>{plot}</div></div>'


# ---- duplicate pairs --------------------------------------------------------------------------


def _pair(pair: dict[str, Any]) -> str:
    duplicate, kept = pair["duplicate"], pair["kept"]
    left_text, right_text = duplicate[TEXT] or "", kept[TEXT] or ""  # cut to report.PAIR_TEXT_CHARS
    matcher = difflib.SequenceMatcher(None, left_text, right_text, autojunk=False)
    left, right = [], []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            left.append(_equal_run(left_text[a0:a1]))
            right.append(_equal_run(right_text[b0:b1]))
            continue
        if a1 > a0:
            left.append(f"<del>{_e(left_text[a0:a1])}</del>")
        if b1 > b0:
            right.append(f"<ins>{_e(right_text[b0:b1])}</ins>")
    head = f"{pair['fate']} · similarity of the texts {matcher.ratio():.1%}"
    return (
        f'<div class="pair"><div class="head">{head}</div><div class="sides">'
        f'<div class="side"><div class="who">{_who("duplicate", duplicate)}</div>{"".join(left)}</div>'
        f'<div class="side"><div class="who">{_who("kept", kept)}</div>{"".join(right)}</div></div></div>'
    )


def _who(role: str, row: dict[str, Any]) -> str:
    source, doc_id = str(row[SOURCE]).rsplit("/", 1)[-1], _e(row["doc_id"])
    return f'<b>{role}</b> <code data-doc-id="{doc_id}">{doc_id}</code> · {_e(source)}:{row[RECORD]}'


def _equal_run(text: str) -> str:
    if len(text) <= 2 * EQUAL_CONTEXT + 20:
        return _e(text)
    skipped = len(text) - 2 * EQUAL_CONTEXT
    skip = f'<span class="skip">… {skipped:,} identical characters …</span>'
    return f"{_e(text[:EQUAL_CONTEXT])}{skip}{_e(text[-EQUAL_CONTEXT:])}"


# ---- plots ------------------------------------------------------------------------------------


def _img(svg: str, alt: str) -> str:
    encoded = base64.b64encode(svg.encode()).decode()
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/svg+xml;base64,{encoded}">'


def _plot_fates(fates: dict[str, int]) -> str:
    names = list(FATES)
    return _img(report_charts.rows(names, [fates[name] for name in names], [FATE_COLOURS[name] for name in names],
                                   "records"), "records per fate")


def _plot_histograms(series: list[tuple[str, dict[str, Any], str]], xlabel: str, ylabel: str = "documents") -> str:
    """Histograms on shared bins: bars side by side per bin, labelled by the bin's range."""
    shown = [(name, hist, colour) for name, hist, colour in series if hist.get("counts")]
    if not shown:
        return _empty("Nothing to plot: no documents.")
    lowers = sorted({edge for _, hist, _ in shown for edge in hist["edges"][:-1]})
    uppers = {}
    for _, hist, _ in shown:
        uppers.update(zip(hist["edges"][:-1], hist["edges"][1:]))
    bars = []
    for name, hist, colour in shown:
        count_of = dict(zip(hist["edges"], hist["counts"]))  # by the bin's lower edge
        bars.append((f"{name} ({hist['total']:,})", [count_of.get(edge, 0) for edge in lowers], colour))
    labels = [_bin_label(edge, uppers[edge]) for edge in lowers]
    chart = report_charts.columns(bars, labels, xlabel, ylabel, every=max(1, len(lowers) // 14), slanted=True)
    return _img(chart, f"histogram of {xlabel}")


def _plot_bars(labels: list[str], values: list[float], xlabel: str, ylabel: str, colour: str, every: int = 1) -> str:
    chart = report_charts.columns([(ylabel, values, colour)], labels, xlabel, ylabel, every=every, min_slots=8)
    return _img(chart, ylabel)


# ---- small helpers ----------------------------------------------------------------------------


def _bin_label(lower: int, upper: int | None) -> str:
    if upper is None:
        return f"{lower:,}+"
    return f"{lower:,}" if upper == lower + 1 else f"{lower:,}–{upper - 1:,}"


def _bins_table(key: str, hist: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td class=n>{_bin_label(lower, upper)}</td>{_num(f'{key}.counts.{i}', n)}</tr>"
        for i, (lower, upper, n) in enumerate(zip(hist["edges"][:-1], hist["edges"][1:], hist["counts"]))
    )
    name = key.replace("_", " ").replace(".", ": ")
    head = "<tr><th class=n>range</th><th class=n>documents</th></tr>"
    return f"<details><summary>bins of {name}</summary><table>{head}{rows}</table></details>"


def _mean(hist: dict[str, Any]) -> str:
    return f"{hist['sum'] / hist['total']:,.1f}" if hist["total"] else "–"


def _num(key: str, value: float, decimals: int = 0) -> str:
    return f'<td class="n" data-key="{_e(key)}">{value:,.{decimals}f}</td>'


def _num_text(key: str, value: float) -> str:
    return f'<span data-key="{_e(key)}">{value:,}</span>'


def _pct(n: float, of: float) -> str:
    return f"{100 * n / of:.1f}%" if of else "–"


def _empty(message: str) -> str:
    return f'<p class="empty">{_e(message)}</p>'


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)

"""report.html, the report's distributions and the summary table: checked against report.json,
the manifest and the fates, docs and shards tables, on one build of the bundled sample."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from operators.normalize import OPENCC_CHANGED, NormalizeConfig, Normalizer, changed_chars
from pipeline import report_charts
from pipeline.histograms import HISTOGRAM_EDGES, bin_counts
from pipeline.report import histogram, human_report
from pipeline.report_html import render
from tests.conftest import ASSETS
from tests.contracts import check_manifest, read_shards, read_table

STRUCTURAL = {"[CLS]", "[SEP]", "[PAD]", "[MASK]"}
SECTIONS = ("summary", "fates", "lengths", "opencc", "dedup", "tokens", "shards", "stages")


@pytest.fixture(scope="module")
def out(sample_corpus) -> Path:
    return sample_corpus["out"]


class _Page(HTMLParser):
    """Every ``data-key`` cell's text, the ``data-doc-id`` pairs, section ids, images and tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.values: list[tuple[str, str]] = []
        self.doc_ids: list[str] = []
        self.sections: list[str] = []
        self.images: list[str] = []
        self.tags: Counter[str] = Counter()
        self._key: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags[tag] += 1
        if "data-key" in attributes:
            self._key, self._text = attributes["data-key"], ""
        if "data-doc-id" in attributes:
            self.doc_ids.append(attributes["data-doc-id"] or "")
        if tag == "section":
            self.sections.append(attributes.get("id") or "")
        if tag == "img":
            self.images.append(attributes.get("src") or "")

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if self._key is not None:
            self.values.append((self._key, self._text.strip()))
            self._key = None


def parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


def lookup(report: dict[str, Any], key: str) -> Any:
    """``fates.filtered.too_short`` -> report["fates"]["filtered.too_short"]; list indexes are numbers."""
    node: Any = report
    parts = key.split(".")
    while parts:
        if isinstance(node, list):
            node, parts = node[int(parts[0])], parts[1:]
            continue
        for n in range(len(parts), 0, -1):
            name = ".".join(parts[:n])
            if name in node:
                node, parts = node[name], parts[n:]
                break
        else:
            raise KeyError(key)
    return node


def number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.fixture(scope="module")
def parts(out):
    report = json.loads((out / "report.json").read_text())
    return {
        "report": report,
        "manifest": check_manifest(out),
        "page": parse((out / "report.html").read_text(encoding="utf-8")),
        "fates": read_table(out, "fates"),
        "docs": read_table(out, "docs"),
    }


def test_every_number_on_the_page_is_the_one_in_report_json_or_the_manifest(parts):
    report, page = parts["report"], parts["page"]
    shards = {entry["path"].removeprefix("shards/"): entry for entry in parts["manifest"]["files"]}
    sizes = dict(map(tuple, report["dedup_clusters"]["sizes"]))
    assert len(page.values) > 60
    for key, text in page.values:
        if key.startswith("shards."):
            name, field = key.removeprefix("shards.").rsplit(".", 1)
            expected = shards[name][field]
        elif key.startswith("dedup_clusters.size."):
            expected = sizes[int(key.rsplit(".", 1)[1])]
        else:
            expected = lookup(report, key)
        assert number(text) == pytest.approx(expected, abs=0.006), key


def test_the_report_agrees_with_the_output_tables(out, parts):
    report, fates, docs = parts["report"], parts["fates"], parts["docs"]
    fate_counts = Counter(fates.column("fate").to_pylist())
    reasons = Counter(
        f"{fate}.{(detail or '').split(':', 1)[0]}"
        for fate, detail in zip(fates.column("fate").to_pylist(), fates.column("detail").to_pylist())
        if fate in ("filtered", "rejected")
    )
    assert {k: v for k, v in report["fates"].items() if "." not in k and k != "records"} == {
        fate: fate_counts.get(fate, 0) for fate in ("kept", "exact_dup", "near_dup", "filtered", "rejected")
    }
    assert {k: v for k, v in report["fates"].items() if "." in k} == dict(reasons)

    per_keeper = Counter(
        d for f, d in zip(fates.column("fate").to_pylist(), fates.column("detail").to_pylist()) if f.endswith("_dup")
    )
    assert sorted(map(list, Counter(n + 1 for n in per_keeper.values()).items())) == report["dedup_clusters"]["sizes"]

    texts = docs.column("text").to_pylist()
    after = report["lengths"]["after"]
    assert after["total"] == len(texts) and after["sum"] == sum(map(len, texts))
    assert sum(after["counts"]) == len(texts)
    lowers, uppers = after["edges"][:-1], after["edges"][1:]
    for lower, upper, count in zip(lowers, uppers, after["counts"]):
        assert count == sum(lower <= len(t) and (upper is None or len(t) < upper) for t in texts)
    before = report["lengths"]["before"]
    assert before["total"] == report["fates"]["records"] - report["fates"]["rejected"]
    assert before["sum"] >= after["sum"]

    shards, _ = read_shards(out)
    vocab = (ASSETS / "vocab.txt").read_text(encoding="utf-8").split("\n")
    text_tokens = sum(vocab[i] not in STRUCTURAL for ids in shards.column("input_ids").to_pylist() for i in ids)
    assert report["tokens_per_doc"]["sum"] == text_tokens
    assert report["tokens_per_doc"]["total"] == len(texts)
    assert report["opencc"]["records"] == before["total"] and report["opencc"]["chars"] == before["sum"]
    assert report["opencc"]["chars_changed"] > 0  # the sample has Taiwan traditional records


def test_report_html_is_self_contained_listed_and_renders_every_section(out, parts):
    html_text = (out / "report.html").read_text(encoding="utf-8")
    page = parts["page"]
    assert "report.html" in {entry["path"] for entry in parts["manifest"]["files"]}
    assert page.sections == list(SECTIONS)
    assert not (page.tags["script"] or page.tags["link"] or page.tags["iframe"])
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", html_text, re.IGNORECASE)
    assert len(page.images) >= 6 and all(src.startswith("data:image/svg+xml;base64,") for src in page.images)


def test_duplicate_pairs_show_a_duplicate_next_to_the_document_kept_for_it(parts):
    page, fates = parts["page"], parts["fates"]
    detail = {d: (f, k) for d, f, k in zip(*(fates.column(c).to_pylist() for c in ("doc_id", "fate", "detail")))}
    pairs = list(zip(page.doc_ids[::2], page.doc_ids[1::2]))
    assert pairs
    for duplicate, kept in pairs:
        assert detail[duplicate] == ("near_dup", kept)
        assert detail[kept][0] == "kept"
    assert page.tags["del"] + page.tags["ins"] > 0


def test_summary_table_names_every_count(parts):
    text = human_report(parts["report"])
    report = parts["report"]
    for label in (
        "records",
        "kept",
        "exact_dup",
        "near_dup",
        "filtered",
        "rejected",
        "too_short",
        "docs",
        "words",
        "tokens",
        "examples",
        "shards",
        "seconds",
        "MB/s",
        "total",
    ):
        assert re.search(rf"^\s*{re.escape(label)}\b", text, re.MULTILINE) or label in text, label
    assert f"{report['fates']['records']:,}" in text and f"{report['corpus']['tokens']:,}" in text
    for stage in report["stages"]:
        assert re.search(rf"^\s+{re.escape(stage)}\s+\d", text, re.MULTILINE), stage


# ---- no Ray below ---------------------------------------------------------------------------


def test_histogram_bins_add_up_across_batches():
    values = np.array([0, 1, 1, 2, 4, 5, 99, 100, 149, 150, 10**9])
    counts = bin_counts(values)
    assert counts.sum() == len(values) and counts[0] == 1 and counts[1] == 2
    assert counts[-1] == 1  # the last bin is open above
    halves = bin_counts(values[:5]) + bin_counts(values[5:])
    assert (halves == counts).all()
    totals = {f"x.bin{i}": int(n) for i, n in enumerate(counts)} | {"x.sum": int(values.sum())}
    hist = histogram(totals, "x")
    assert hist["edges"][0] == 0 and hist["edges"][-1] is None
    assert len(hist["edges"]) == len(hist["counts"]) + 1 and sum(hist["counts"]) == len(values)
    assert list(HISTOGRAM_EDGES[:12]) == [0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20]


def test_normalize_counts_the_characters_opencc_changed():
    assert changed_chars("於倫敦", "于伦敦") == 2
    assert changed_chars("abc", "abc") == 0
    assert changed_chars("abcd", "abd") == 1
    batch = pa.table(
        {
            "raw": ["漢字與簡體字的轉換是一件很有意思的事情", None],
            "fate": [None, "rejected"],
            "detail": [None, "x"],
        }
    )
    out = Normalizer(NormalizeConfig(min_chars=1)).__call__(batch)
    assert out.column(OPENCC_CHANGED).to_pylist() == [6, None]  # 漢與簡體轉換


def test_a_build_without_duplicates_renders_every_section_with_a_note():
    empty = {"edges": [], "counts": [], "total": 0, "sum": 0}
    report = {
        "version": 1,
        "seconds": 2.0,
        "input_bytes": 1000,
        "inputs": 1,
        "unreadable_files": [],
        "fates": {"kept": 0, "exact_dup": 0, "near_dup": 0, "filtered": 0, "rejected": 0, "records": 0},
        "corpus": {"docs": 0, "chars": 0, "words": 0, "tokens": 0, "examples": 0, "shards": 0},
        "lengths": {"before": empty, "after": empty},
        "tokens_per_doc": empty,
        "opencc": {"chars_changed": 0, "records_changed": 0, "records": 0, "chars": 0},
        "dedup_clusters": {"sizes": [], "clusters": 0, "duplicates": 0},
        "stages": {"read+normalize": {"seconds": 1.0, "mb_per_s": 0.001}},
    }
    page = parse(render(report, [], [], title="empty"))
    assert page.sections == list(SECTIONS)
    text = render(report, [], [], title="empty")
    assert "No duplicates were found" in text and "No shard was written" in text


def _bar_sizes(svg: str, size: str) -> list[float]:
    """``size`` ("height" or "width") of each rectangle of a chart (bars, then legend swatches), in drawing
    order, once the SVG parses."""
    return [float(rect.get(size)) for rect in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}rect")]


@pytest.mark.parametrize("top", [0.04, 0.9, 1, 3, 7, 10, 49, 76, 101, 2_000, 123_456])
def test_chart_gridlines_are_round_steps_from_zero_that_reach_the_largest_value(top):
    ticks = report_charts._ticks(top)
    step = ticks[1]
    assert ticks[0] == 0 and ticks[-2] < top <= ticks[-1] and 3 <= len(ticks) <= 7
    assert f"{step:.0e}"[0] in "125" and all(t == pytest.approx(i * step) for i, t in enumerate(ticks))


def test_charts_draw_every_value_to_scale():
    series = [("a", [3, 12, 0], "#111"), ("b", [6, 1, 2], "#222")]
    columns = report_charts.columns(series, ["x", "y", "z"], "bins", "docs")
    heights = _bar_sizes(columns, "height")
    assert len(heights) == 6 + 2 and heights[2] == 0
    heights = heights[:6]
    assert [h / heights[0] for h in heights] == pytest.approx([1, 4, 0, 2, 1 / 3, 2 / 3], rel=0.01)  # 0.1 px
    rows = report_charts.rows(["kept", "near_dup", "rejected"], [76, 4, 0], ["#1", "#2", "#3"], "records")
    widths = _bar_sizes(rows, "width")
    assert widths[2] == 0 and widths[0] / widths[1] == pytest.approx(19, rel=0.01)
    assert ">76<" in rows and ">near_dup<" in rows

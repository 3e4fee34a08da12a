"""Normalize: Unicode cleanup, one OpenCC conversion, filters with reasons, and the dedup fingerprint.

OpenCC's t2s is phrase-based and not idempotent: text it outputs can change again under a
second pass (於倫敦 -> 於伦敦 -> 于伦敦). So the conversion is one step, done here only, that by
default runs OpenCC to its fixed point (``opencc_fixed_point``): the published text then no
longer changes when a user converts it again. The price is OpenCC's own single-character
fallback on phrases it only knows in traditional form (乾清宫 -> 干清宫, 打坏 -> 打坯, 杨联陞 -> 杨联升;
4 of 3,104 CMRC2018 + DRCD paragraphs); set ``opencc_fixed_point: false`` for a single pass instead.
The dedup fingerprint is built from that same conversion (t2s, reusing the output text when the
output conversion is t2s) and folds away what should not make two documents different:
script, width, case, punctuation and whitespace.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np
import pyarrow as pa

from operators.batching import in_slices
from operators.columns import DETAIL, FATE, FILTERED, FINGERPRINT, RAW, TEXT

EMPTY = "empty"
TOO_SHORT = "too_short"
LOW_CJK_SHARE = "low_cjk_share"
OPENCC_CHANGED = "opencc_changed"  # per row: characters OpenCC changed (for the report; not in the output tables)

# Kept despite being Unicode "format" characters: none. Kept "control" characters: \n and \t.
_DROPPED_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn"}
_KEPT_CONTROLS = {"\n", "\t"}
_FULLWIDTH_ASCII = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_FINGERPRINT_DROPPED = ("P", "Z", "S", "C")
_MAX_OPENCC_PASSES = 4  # a fixed point is reached in two passes on CMRC2018 + DRCD


class _Deleting(dict):
    """A ``str.translate`` table deleting the characters ``deletes`` picks, filled in one distinct character
    at a time: ``translate`` then looks each character up in C. Asking ``unicodedata.category`` once per
    character, in a generator over the text, made ``clean`` and ``fingerprint`` three times slower, most
    of ``normalize``'s time. Holds at most one entry per character a process has seen."""

    def __init__(self, deletes: Callable[[str], bool]) -> None:
        super().__init__()
        self._deletes = deletes

    def __missing__(self, code: int) -> int | None:
        self[code] = kept = None if self._deletes(chr(code)) else code
        return kept


_INVISIBLE = _Deleting(lambda ch: ch not in _KEPT_CONTROLS and unicodedata.category(ch) in _DROPPED_CATEGORIES)
_NOT_IN_FINGERPRINT = _Deleting(lambda ch: unicodedata.category(ch).startswith(_FINGERPRINT_DROPPED))


@dataclass(frozen=True)
class NormalizeConfig:
    opencc: str = "t2s"  # an OpenCC config name (t2s, tw2s, hk2s, s2t, ...) or "none"
    opencc_fixed_point: bool = True  # repeat OpenCC until the text no longer changes (see the module doc)
    fullwidth_to_halfwidth: bool = False  # full-width ASCII (Ａ１，！) to half-width (A1,!)
    min_chars: int = 20
    min_cjk_share: float = 0.0  # share of CJK among non-space characters; 0 keeps English-only text
    batch_size: int = 1024

    def __post_init__(self) -> None:
        if self.opencc != "none" and self.opencc.removesuffix(".json") not in available_opencc_configs():
            known = ", ".join(sorted(available_opencc_configs()))
            raise ValueError(f"unknown OpenCC config {self.opencc!r} (known: none, {known})")
        if not 0.0 <= self.min_cjk_share <= 1.0:
            raise ValueError("min_cjk_share must be between 0 and 1")


def available_opencc_configs() -> set[str]:
    import opencc

    return {name.removesuffix(".json") for name in opencc.CONFIGS}


def clean(text: str, fullwidth_to_halfwidth: bool = False) -> str:
    """NFC; drop control, zero-width, private-use and unassigned characters; one kind of space."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.isprintable():  # printable: no character of an "Other" category, nothing to look up
        text = text.translate(_INVISIBLE)
    if fullwidth_to_halfwidth:
        text = text.translate(_FULLWIDTH_ASCII)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def fingerprint(t2s_text: str) -> str:
    """The dedup-only form of an already t2s-converted text: NFKC, casefolded, no punctuation or spaces."""
    return unicodedata.normalize("NFKC", t2s_text).casefold().translate(_NOT_IN_FINGERPRINT)


def changed_chars(before: str, after: str) -> int:
    """Characters that differ between two versions of a text (OpenCC is almost always one char for one)."""
    if before == after:
        return 0
    if len(before) == len(after):
        return int(np.count_nonzero(_code_points(before) != _code_points(after)))
    matched = sum(block.size for block in SequenceMatcher(None, before, after, autojunk=False).get_matching_blocks())
    return max(len(before), len(after)) - matched


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x3134F
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF
    )


def cjk_share(text: str) -> float:
    visible = [ch for ch in text if not ch.isspace()]
    return sum(map(is_cjk, visible)) / len(visible) if visible else 0.0


class Normalizer:
    """Core. Cheap to construct; OpenCC converters are built on first use, in the worker."""

    def __init__(self, cfg: NormalizeConfig):
        self.cfg = cfg
        self._converters: dict[str, object] = {}

    def _convert(self, config: str, text: str) -> str:
        if config == "none":
            return text
        if config not in self._converters:
            import opencc

            self._converters[config] = opencc.OpenCC(config)
        convert = self._converters[config].convert
        passes = _MAX_OPENCC_PASSES if self.cfg.opencc_fixed_point else 1
        for _ in range(passes):
            converted = convert(text)
            if converted == text:
                break
            text = converted
        return text

    def normalize(self, raw: str) -> tuple[str, str, str | None]:
        """(text, fingerprint, None) to keep, or (text, fingerprint, reason) to filter."""
        return self.normalize_counted(raw)[:3]

    def normalize_counted(self, raw: str) -> tuple[str, str, str | None, int]:
        """``normalize``, plus how many characters the OpenCC conversion changed."""
        cleaned = clean(raw, self.cfg.fullwidth_to_halfwidth)
        text = self._convert(self.cfg.opencc, cleaned)
        simplified = text if self.cfg.opencc.removesuffix(".json") == "t2s" else self._convert("t2s", cleaned)
        return text, fingerprint(simplified), self.reason_to_filter(text), changed_chars(cleaned, text)

    def reason_to_filter(self, text: str) -> str | None:
        if not text:
            return EMPTY
        if len(text) < self.cfg.min_chars:
            return TOO_SHORT
        if self.cfg.min_cjk_share and cjk_share(text) < self.cfg.min_cjk_share:
            return LOW_CJK_SHARE
        return None

    def mark(self, raw: str | None, fate: str | None, detail: str | None) -> tuple[str | None, ...]:
        """(text, fingerprint, fate, detail, opencc_changed) for one row; rows rejected upstream pass through."""
        if fate is not None:
            return None, None, fate, detail, None
        text, print_, reason, changed = self.normalize_counted(raw)
        return text, print_, FILTERED if reason else None, reason, changed

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Batch in, batch out: sets text, fingerprint, fate, detail and opencc_changed. No row disappears."""
        rows = [self.mark(*row) for row in zip(*(batch.column(c).to_pylist() for c in (RAW, FATE, DETAIL)))]
        columns = list(zip(*rows)) or [()] * 5
        batch = batch.drop_columns([RAW, FATE, DETAIL])
        types = (pa.string(),) * 4 + (pa.int64(),)
        for name, values, type_ in zip((TEXT, FINGERPRINT, FATE, DETAIL, OPENCC_CHANGED), columns, types):
            batch = batch.append_column(name, pa.array(values, type_))
        return batch


def apply(ds, cfg: NormalizeConfig):
    """The only code that touches ray.data: batching. OpenCC holds the GIL, so Ray processes parallelize it;
    plain tasks (no actor pool) fuse with the reader's and the signing map's. Whole blocks in, ``batch_size``
    records at a time inside (``operators.batching``)."""
    return ds.map_batches(_normalize_batch, fn_kwargs={"cfg": cfg}, batch_size=None, batch_format="pyarrow")


@functools.lru_cache(maxsize=4)
def _normalizer_for(cfg: NormalizeConfig) -> Normalizer:
    """One normalizer (and its OpenCC converters) per Ray worker process and config."""
    return Normalizer(cfg)


def _normalize_batch(batch: pa.Table, cfg: NormalizeConfig) -> pa.Table:
    return in_slices(batch, _normalizer_for(cfg), cfg.batch_size)

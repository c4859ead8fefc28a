"""What one request's activations are expected to take, from what it asks: a pure function of measured requests.

A request's size is what drives its activations: for TTS the phoneme tokens of its longest piece
(the model runs one piece at a time), for language and AI-voice detection the seconds of audio,
capped by the model's window (the model sees one window at a time). Sizes fall into buckets that
double (1, 2, 3-4, 5-8, ... 65-128); a request of unknown size (a caller that does not say) counts
as the largest its model can ask (ModelSpec.size_cap: TTS_PIECE_TOKENS), or above every bucket
where that is not known.

The figure for a size is an upper envelope of the measured request peaks, never a quantile (real
Kokoro request peaks spread 34-116 MB, wider than the 48 MB margin: a 95 % quantile OOM-killed a
worker through HTTP, issue 24): the largest peak among requests of the same bucket or smaller,
once TRUSTED requests of that bucket were measured. With fewer, the nearest larger bucket that has
TRUSTED bounds it from above; with none, the family's allowance (the catalog's worst case) is a
floor. The peaks are the cost book's window (costs.WINDOW, the newest last), so an outlier stops
counting once the window has moved past it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

TRUSTED = 3  # requests of a bucket measured before its own peaks (and smaller ones) decide its figure
UNKNOWN_BUCKET = 1_000  # above every real size: where requests of unknown size fall


@dataclass(frozen=True)
class RequestCost:
    """The activations admission keeps room for, for one request size, and the rule that gave the figure."""

    mb: float
    rule: str
    size: float | None = None  # what the request asked; None = unknown (the largest a request can be)


def bucket(size: float | None) -> int:
    """The size's bucket: 0 for sizes up to 1, then n for sizes in (2**(n-1), 2**n]; unknown above all."""
    if size is None:
        return UNKNOWN_BUCKET
    return max(0, math.ceil(math.log2(max(size, 1.0))))


def bucket_top(index: int) -> float | None:
    """The largest size of bucket `index` (None for the unknown bucket)."""
    return None if index >= UNKNOWN_BUCKET else float(2 ** index)


def request_cost(samples: Sequence[tuple[float | None, float]], size: float | None, floor_mb: float,
                 unit: str = "") -> RequestCost:
    """The activations to keep room for a request of `size`, from measured (size, peak MB) pairs.

    `floor_mb`: the family's allowance, used when nothing of this size or larger was measured enough.
    """
    own = bucket(size)
    by_bucket: dict[int, list[float]] = {}
    for sample_size, peak in samples:
        by_bucket.setdefault(bucket(sample_size), []).append(peak)
    counted = {b: peaks for b, peaks in by_bucket.items() if len(peaks) >= TRUSTED}
    trusted = sorted(b for b in counted if b >= own)
    what = _describe(own, unit)
    if trusted:
        bound = trusted[0]  # this size's own bucket if it has enough, else the nearest larger one that has
        peaks = [p for b, ps in by_bucket.items() if b <= bound for p in ps]
        n = len(peaks)
        if bound == own:
            return RequestCost(max(peaks), f"largest of {n} measured requests of {what} or smaller", size)
        return RequestCost(max(peaks), f"largest of {n} measured requests up to {_describe(bound, unit)} "
                                       f"(fewer than {TRUSTED} of {what})", size)
    peaks = [p for ps in by_bucket.values() for p in ps]
    if peaks and max(peaks) >= floor_mb:
        return RequestCost(max(peaks), f"largest of all {len(peaks)} measured requests (fewer than {TRUSTED} "
                                       f"of {what} or larger)", size)
    return RequestCost(floor_mb, f"the family's allowance (fewer than {TRUSTED} requests of {what} or larger "
                                 "measured)", size)


def _describe(index: int, unit: str) -> str:
    top = bucket_top(index)
    if top is None:
        return "unknown size"
    low = 0 if index == 0 else 2 ** (index - 1) + 1
    span = f"{low:g}-{top:g}" if low < top else f"{top:g}"
    return f"size {span}{' ' + unit if unit else ''}"


def envelope(samples: Sequence[tuple[float | None, float]], floor_mb: float, unit: str = "",
             unknown: bool = True) -> list[RequestCost]:
    """The figure admission would use for each bucket that holds a measurement (shown), and with `unknown` for a
    request of unknown size."""
    buckets = sorted({bucket(s) for s, _ in samples} | ({UNKNOWN_BUCKET} if unknown else set()))
    return [request_cost(samples, bucket_top(b), floor_mb, unit) for b in buckets]

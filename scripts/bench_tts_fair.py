"""Short requests while long texts stream: one model slot held per request vs turns by piece, and piece sizes.

In one process with the real ONNX Kokoro (packaged int8), threads play the clients. Variants:
- `before`: a request holds the model's one slot from its first piece to its last; others wait up to
  QUEUE_TIMEOUT_S (then they count as refused, 503 model_busy), at most MAX_QUEUE of them;
- `round_robin`, `shortest`: backend.pipelines.turns hands out the slot one piece at a time, full pieces;
- `landed`: `shortest` as it landed first (c119191..7bab1dd): its guard kept every overtaken request's
  count, so each long request waiting went before the next short one; full pieces;
- `cutN` (e.g. cut40): `shortest` with today's guard, every contended turn (another request admitted, or one
  ran since this one's last) cuts its piece to N tokens (8268f98..62d35fd; cut0: never cut);
- `lessN`: cut to N only when it helps someone (turns.cut_helps, the rule today): another admitted request
  has less work left than this piece, or one that did ran since this one's last turn;
- `lessnowN`: the same without the memory (only requests admitted at this turn count);
- `shortN`: cut when another admitted request, or one that ran since, has at most SHORT_PIECES pieces left;
- `mergeN`: `lessN`, and a short request (SHORT_TOKENS in all) among others says itself in one model call
  (turns.whole, the rule today); the variants above are without it;
- `holdN`: `lessN`, and a request with at most SHORT_TOKENS left keeps the slot between its own pieces
  (reserved until it asks again or leaves: a client slow to read would hold the model; measured, not served);
- `srptN`: `mergeN` with shortest-remaining-first by tokens left (the guard kept) instead of "few pieces left".
For 0, 1 and 3 long texts streaming (each consumer takes blocks as fast as they come), short requests
("The kettle is on, come and sit down.") are sent one after another; and long texts alone (--longs-alone:
long streams among themselves). Figures:
short latency p50/p95 (submit -> whole audio) in wall seconds and in service CPU-seconds (the process's
CPU time between a request's submit and its last audio: with 1 inference thread and the model the only
consumer, what the box did for everyone meanwhile, whatever the load of the machine), refusals, the
long requests' total time and longest gap between two audio blocks, and throughput (audio seconds per
wall second, and per CPU-second: the load-independent one).

    python -m scripts.bench_tts_fair --shorts 4 --long-chars 300 --longs 0,1,3 --longs-alone 3 \
        --variants cut0,cut24,less24,lessnow24,short24
    python -m scripts.bench_tts_fair joins --whisper CT2_DIR --caps 0,24,40   # cut pieces: silences, CER
    python -m scripts.bench_tts_fair calls --long-chars 300 --repeats 10      # what a model call costs
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

import numpy as np

from backend.api.schemas.tts import validate_request
from backend.pipelines.tts.kokoro_onnx import KokoroOnnxPipeline
from backend.pipelines.tts.pipeline import SAMPLE_RATE_HZ
from backend.pipelines.turns import MAX_OVERTAKEN, SHORT_PIECES, SHORT_TOKENS, PieceTurns, Ticket
from config import build_settings

SHORT = "The kettle is on, come and sit down."
PARAGRAPH = ("The old lighthouse stood at the end of the harbour, and every night its keeper climbed the narrow "
             "stairs to light the lamp. Ships passing in the dark trusted that light more than their own charts. ")


class Unmerged(PieceTurns):
    """The rules before turns.whole: a short request's pieces each take a turn of their own."""

    def whole(self, ticket: Ticket) -> bool:
        return False


class LandedTurns(Unmerged):
    """`shortest` as it first landed: a guard turn did not start the others' counts again."""

    def _passed(self, ticket: Ticket) -> None:
        for other in self._waiting:
            other.overtaken += other.asked < ticket.asked


class AlwaysTurns(Unmerged):
    """`cutN`: every contended turn cuts (another request admitted, or one ran since this one's last)."""

    def _cut_helps(self, ticket: Ticket) -> bool:
        return len(self._joined) > 1 or ticket.seen is not None


class NowTurns(Unmerged):
    """`lessnowN`: cut when a request admitted now has less work left than this piece (no memory of who ran)."""

    def _cut_helps(self, ticket: Ticket) -> bool:
        return any(other.work < ticket.piece for other in self._joined if other is not ticket)


class FewPiecesTurns(Unmerged):
    """`shortN`: cut when another admitted request, or one that ran since this one's last, has few pieces left
    (`seen` holds pieces here, not tokens)."""

    def _cut_helps(self, ticket: Ticket) -> bool:
        left = [other.remaining for other in self._joined if other is not ticket]
        return any(n <= SHORT_PIECES for n in (left if ticket.seen is None else [*left, ticket.seen]))

    def _ran(self, ticket: Ticket, left: int) -> None:
        super()._ran(ticket, ticket.remaining)


class HoldTurns(Unmerged):
    """`holdN`: a request with at most SHORT_TOKENS left keeps its slot after a piece until it asks again or leaves
    (unless a waiting request's guard is due)."""

    held: Ticket | None = None

    def next_up(self) -> Ticket | None:
        with self._changed:
            if self.held is not None:
                return self.held if self.held.waiting else None
            return super().next_up()

    def start(self, ticket: Ticket) -> bool:
        with self._changed:
            if self.held is ticket:
                self.held, self._free = None, self._free + 1  # taken again just below
            return super().start(ticket)

    def finish(self, ticket: Ticket) -> None:
        with self._changed:
            super().finish(ticket)
            if ticket.remaining > 0 and 0 < ticket.work <= SHORT_TOKENS and ticket in self._joined and \
                    not any(other.overtaken >= MAX_OVERTAKEN for other in self._waiting):
                self.held, self._free = ticket, self._free - 1

    def leave(self, ticket: Ticket) -> None:
        with self._changed:
            if self.held is ticket:
                self.held, self._free = None, self._free + 1
                self._changed.notify_all()
        super().leave(ticket)


class LeastWorkTurns(PieceTurns):
    """`srptN`: the waiting request with the fewest tokens left goes first (a request overtaken MAX_OVERTAKEN
    times still goes next)."""

    def next_up(self) -> Ticket | None:
        with self._changed:
            if self._free <= 0 or not self._waiting:
                return None
            return min(self._waiting, key=lambda t: (t.overtaken < MAX_OVERTAKEN, t.work, t.asked))


class Slot:
    """`before`: one request at a time from first piece to last, a bounded queue and a bounded wait."""

    def __init__(self, max_queue: int, timeout_s: float) -> None:
        self.lock, self.max_queue, self.timeout_s = threading.Semaphore(1), max_queue, timeout_s
        self.waiting, self.guard = 0, threading.Lock()

    def enter(self) -> bool:
        if self.lock.acquire(blocking=False):
            return True
        with self.guard:
            if self.waiting >= self.max_queue:
                return False
            self.waiting += 1
        try:
            return self.lock.acquire(timeout=self.timeout_s)
        finally:
            with self.guard:
                self.waiting -= 1


def one_request(pipe: KokoroOnnxPipeline, text: str, slot: Slot | None, record: dict) -> None:
    submitted, cpu_submitted = time.perf_counter(), time.process_time()
    if slot is not None and not slot.enter():
        record.update(refused=True, latency_s=time.perf_counter() - submitted)
        return
    try:
        blocks = pipe.run(pipe.preprocess(validate_request(pipe.settings, text=text, fmt="wav"))).blocks
        stamps, cpu_stamps, samples = [], [], 0
        for block in blocks:
            stamps.append(time.perf_counter())
            cpu_stamps.append(time.process_time())
            samples += len(block)
        gaps, cpu_gaps = np.diff([submitted, *stamps]), np.diff([cpu_submitted, *cpu_stamps])
        record.update(refused=False, latency_s=stamps[-1] - submitted, first_s=stamps[0] - submitted,
                      service_cpu_s=cpu_stamps[-1] - cpu_submitted, pieces=len(stamps),
                      longest_gap_s=float(gaps[1:].max()) if len(gaps) > 1 else 0.0,
                      longest_gap_cpu_s=float(cpu_gaps[1:].max()) if len(cpu_gaps) > 1 else 0.0,
                      audio_s=samples / SAMPLE_RATE_HZ)
    finally:
        if slot is not None:
            slot.lock.release()


def use(pipe: KokoroOnnxPipeline, variant: str) -> None:
    """Set the pipeline's turns and contended piece size for `variant` (module docstring)."""
    kind = variant.rstrip("0123456789")
    cap = int(variant[len(kind):]) if kind in CUT_RULES else 0
    pipe.settings = pipe.settings.model_copy(update={"tts_contended_piece_tokens": cap})
    if variant in ("round_robin", "shortest"):
        pipe.turns = Unmerged(1, variant)
    elif variant == "landed":
        pipe.turns = LandedTurns(1, "shortest")
    else:
        pipe.turns = CUT_RULES[kind](1, "shortest")


CUT_RULES = {"cut": AlwaysTurns, "less": Unmerged, "lessnow": NowTurns, "short": FewPiecesTurns,
             "merge": PieceTurns, "hold": HoldTurns, "srpt": LeastWorkTurns}


def scenario(pipe: KokoroOnnxPipeline, variant: str, longs: int, shorts: int, long_text: str,
             max_queue: int, timeout_s: float) -> dict:
    slot = Slot(max_queue, timeout_s) if variant == "before" else None
    use(pipe, variant)
    started, cpu_started = time.perf_counter(), time.process_time()
    long_records = [{} for _ in range(longs)]
    threads = [threading.Thread(target=one_request, args=(pipe, long_text, slot, r)) for r in long_records]
    for thread in threads:
        thread.start()
    short_records = []
    if longs and shorts:
        time.sleep(1.0)  # the long ones are streaming
    for _ in range(shorts):
        record: dict = {}
        one_request(pipe, SHORT, slot, record)
        short_records.append(record)
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    served = [r for r in short_records if not r["refused"]]

    def quantiles(key: str) -> tuple[float | None, float | None]:
        values = [r[key] for r in served]
        if not values:
            return None, None
        return round(statistics.median(values), 2), round(float(np.percentile(values, 95)), 2)

    audio = sum(r.get("audio_s", 0.0) for r in short_records + long_records)
    (p50, p95), (cpu_p50, cpu_p95) = quantiles("latency_s"), quantiles("service_cpu_s")
    return {"variant": variant, "longs": longs, "shorts": shorts,
            "short_p50_s": p50, "short_p95_s": p95, "short_cpu_p50_s": cpu_p50, "short_cpu_p95_s": cpu_p95,
            "refused": sum(r["refused"] for r in short_records + long_records),
            "long_total_s": round(max((r.get("latency_s", 0) for r in long_records), default=0), 1),
            "long_total_cpu_s": round(max((r.get("service_cpu_s", 0) for r in long_records), default=0), 1),
            "long_pieces": max((r.get("pieces", 0) for r in long_records), default=0),
            "model_calls": sum(r.get("pieces", 0) for r in short_records + long_records),
            "long_longest_gap_s": round(max((r.get("longest_gap_s", 0) for r in long_records), default=0), 2),
            "long_longest_gap_cpu_s": round(max((r.get("longest_gap_cpu_s", 0) for r in long_records), default=0), 2),
            "throughput": round(audio / wall, 3), "audio_per_cpu_s": round(audio / cpu, 3),
            "cpu_per_audio_s": round(cpu / audio, 3) if audio else None, "audio_s": round(audio, 1),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}


def joins(pipe: KokoroOnnxPipeline, caps: list[int], long_text: str, whisper: str | None, threads: int) -> list[dict]:
    """The long text synthesised with every turn contended (another request admitted, idle) at each cap:
    pieces, CPU-s, audio s, the longest silence inside the joined audio, and its CER by faster-whisper."""
    from backend.audio.decode import resample
    from scripts.bench_tts_captions import listener, longest_inner_silence_s, transcript
    from scripts.intelligibility import character_error_rate

    judge = listener(whisper, threads) if whisper else None
    rows = []
    for cap in caps:
        use(pipe, f"cut{cap}")
        idle = pipe.turns.join(1)  # admitted, never asks: every turn of the long text is contended
        cpu = time.process_time()
        blocks = list(pipe.run(pipe.preprocess(validate_request(pipe.settings, text=long_text, fmt="wav"))).blocks)
        cpu = time.process_time() - cpu
        pipe.turns.leave(idle)
        audio = np.concatenate(blocks)
        row = {"cap": cap, "pieces": len(blocks), "cpu_s": round(cpu, 2), "audio_s": round(len(audio) / SAMPLE_RATE_HZ, 2),
               "cpu_per_audio_s": round(cpu / (len(audio) / SAMPLE_RATE_HZ), 3),
               "longest_inner_silence_s": round(longest_inner_silence_s(audio), 2)}
        if judge is not None:
            heard = transcript(judge, resample(audio, SAMPLE_RATE_HZ, 16000), "en")
            row.update(cer=round(character_error_rate(long_text, heard), 3), heard=heard)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def calls(pipe: KokoroOnnxPipeline, long_text: str, repeats: int) -> list[dict]:
    """What a model call costs beyond its tokens: the short request alone (two calls) against joined (one call,
    another request admitted: turns.whole), and the long text whole against cut at 24 tokens at every turn
    (a short request admitted, idle), interleaved `repeats` times; median CPU-s of each, and per call saved."""
    cases = {"short, 2 calls (alone)": (SHORT, None), "short, 1 call (joined)": (SHORT, 10_000),
             "long, full pieces (alone)": (long_text, None), "long, cut at 24 (a short one admitted)": (long_text, 1)}
    use(pipe, "merge24")
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    made: dict[str, int] = {}
    for _ in range(repeats):
        for name, (text, other) in cases.items():
            idle = pipe.turns.join(1, other) if other is not None else None
            start = time.process_time()
            made[name] = len(list(pipe.run(pipe.preprocess(validate_request(pipe.settings, text=text,
                                                                            fmt="wav"))).blocks))
            cpu[name].append(time.process_time() - start)
            if idle is not None:
                pipe.turns.leave(idle)
    rows = [{"case": name, "blocks": made[name], "cpu_s_median": round(statistics.median(values), 3),
             "cpu_s_spread": [round(min(values), 3), round(max(values), 3)]} for name, values in cpu.items()]
    for row in rows:
        print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", default="fair", choices=("fair", "joins", "calls"))
    parser.add_argument("--repeats", type=int, default=10, help="calls: rounds of the four cases, interleaved")
    parser.add_argument("--shorts", type=int, default=5)
    parser.add_argument("--long-chars", type=int, default=500)
    parser.add_argument("--longs", default="0,1,3")
    parser.add_argument("--longs-alone", default="1",
                        help="also these many long texts with no short request (long streams among themselves)")
    parser.add_argument("--variants", default="cut0,cut24,less24,lessnow24,short24")
    parser.add_argument("--caps", default="0,24,40", help="joins: contended piece sizes")
    parser.add_argument("--whisper", help="joins: a CTranslate2 whisper-base folder for the CER")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--queue-timeout-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    pipe = KokoroOnnxPipeline(build_settings(prometheus_multiproc_dir=None, inference_threads=args.threads))
    pipe.load()
    long_text = (PARAGRAPH * (args.long_chars // len(PARAGRAPH) + 1))[:args.long_chars].rsplit(" ", 1)[0] + "."
    rows = []
    if args.mode == "calls":
        rows = calls(pipe, long_text, args.repeats)
    elif args.mode == "joins":
        rows = joins(pipe, [int(v) for v in args.caps.split(",")], long_text, args.whisper, args.threads)
    else:
        groups = [(int(v), args.shorts) for v in args.longs.split(",")] + \
            [(int(v), 0) for v in args.longs_alone.split(",") if v]
        for longs, shorts in groups:
            for variant in args.variants.split(","):  # interleaved: every variant under the same load, in turn
                rows.append(scenario(pipe, variant, longs, shorts, long_text, args.max_queue, args.queue_timeout_s))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    alone = [r for r in rows if r.get("longs") == 0 and r.get("short_cpu_p95_s") is not None]
    if alone:  # "alone" from this run: the median over every variant's rows without long texts (the same code path)
        p50, p95 = (statistics.median(r[key] for r in alone) for key in ("short_cpu_p50_s", "short_cpu_p95_s"))
        for row in rows:
            if row.get("short_cpu_p95_s") is not None:
                row.update(p50_vs_alone=round(row["short_cpu_p50_s"] / p50, 2),
                           p95_vs_alone=round(row["short_cpu_p95_s"] / p95, 2))
    json.dump({"mode": args.mode, "rows": rows, "long_chars": len(long_text), "threads": args.threads,
               "load_avg": [round(v, 2) for v in os.getloadavg()],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

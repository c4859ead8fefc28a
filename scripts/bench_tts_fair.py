"""Short requests while long texts stream: one model slot held per request (before) vs turns by piece (after).

In one process with the real ONNX Kokoro (packaged int8), threads play the clients. `before` is the
registry's rule today: a request holds the model's one slot from its first piece to its last; others
wait up to QUEUE_TIMEOUT_S (then they count as refused, 503 model_busy), at most MAX_QUEUE of them.
`round_robin` and `shortest` admit every request and let backend.pipelines.turns hand out the slot
one piece at a time. For 0, 1 and 3 long texts streaming (each consumer takes blocks as fast as they
come), short requests ("The kettle is on, come and sit down.") are sent one after another; figures:
short latency p50/p95 (submit -> whole audio), refusals, the long requests' total time and longest
gap between two audio blocks, and throughput (audio seconds produced per wall second).

    python -m scripts.bench_tts_fair --shorts 5 --long-chars 700
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
from backend.pipelines.turns import PieceTurns
from config import build_settings

SHORT = "The kettle is on, come and sit down."
PARAGRAPH = ("The old lighthouse stood at the end of the harbour, and every night its keeper climbed the narrow "
             "stairs to light the lamp. Ships passing in the dark trusted that light more than their own charts. ")


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
    submitted = time.perf_counter()
    if slot is not None and not slot.enter():
        record.update(refused=True, latency_s=time.perf_counter() - submitted)
        return
    try:
        blocks = pipe.run(pipe.preprocess(validate_request(pipe.settings, text=text, fmt="wav"))).blocks
        stamps, samples = [], 0
        for block in blocks:
            stamps.append(time.perf_counter())
            samples += len(block)
        gaps = np.diff([submitted, *stamps])
        record.update(refused=False, latency_s=stamps[-1] - submitted, first_s=stamps[0] - submitted,
                      longest_gap_s=float(gaps[1:].max()) if len(gaps) > 1 else 0.0,
                      audio_s=samples / SAMPLE_RATE_HZ)
    finally:
        if slot is not None:
            slot.lock.release()


def scenario(pipe: KokoroOnnxPipeline, variant: str, longs: int, shorts: int, long_text: str,
             max_queue: int, timeout_s: float) -> dict:
    slot = Slot(max_queue, timeout_s) if variant == "before" else None
    if variant != "before":
        pipe.turns = PieceTurns(1, variant)
    started, cpu_started = time.perf_counter(), time.process_time()
    long_records = [{} for _ in range(longs)]
    threads = [threading.Thread(target=one_request, args=(pipe, long_text, slot, r)) for r in long_records]
    for thread in threads:
        thread.start()
    short_records = []
    if longs:
        time.sleep(1.0)  # the long ones are streaming
    for _ in range(shorts):
        record: dict = {}
        one_request(pipe, SHORT, slot, record)
        short_records.append(record)
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    served = [r for r in short_records if not r["refused"]]
    latencies = [r["latency_s"] for r in served]
    audio = sum(r.get("audio_s", 0.0) for r in short_records + long_records)
    return {"variant": variant, "longs": longs, "shorts": shorts,
            "short_p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "short_p95_s": round(float(np.percentile(latencies, 95)), 2) if latencies else None,
            "refused": sum(r["refused"] for r in short_records + long_records),
            "long_total_s": round(max((r.get("latency_s", 0) for r in long_records), default=0), 1),
            "long_longest_gap_s": round(max((r.get("longest_gap_s", 0) for r in long_records), default=0), 2),
            "throughput": round(audio / wall, 3), "wall_s": round(wall, 1),
            "cpu_s": round(time.process_time() - cpu_started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shorts", type=int, default=5)
    parser.add_argument("--long-chars", type=int, default=700)
    parser.add_argument("--longs", default="0,1,3")
    parser.add_argument("--variants", default="before,round_robin,shortest")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--queue-timeout-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    pipe = KokoroOnnxPipeline(build_settings(prometheus_multiproc_dir=None, inference_threads=args.threads))
    pipe.load()
    long_text = (PARAGRAPH * (args.long_chars // len(PARAGRAPH) + 1))[:args.long_chars].rsplit(" ", 1)[0] + "."
    rows = []
    for longs in [int(v) for v in args.longs.split(",")]:
        for variant in args.variants.split(","):  # interleaved: every variant under the same load, in turn
            rows.append(scenario(pipe, variant, longs, args.shorts, long_text, args.max_queue, args.queue_timeout_s))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    json.dump({"rows": rows, "long_chars": len(long_text), "threads": args.threads,
               "load_avg": [round(v, 2) for v in os.getloadavg()],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

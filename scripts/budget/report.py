"""Turn a raw run into the verdict, the terminal table, report.json, the PNG plot and a markdown row.

Verdict: the configuration FITS when the kernel killed nothing, no worker restarted unexpectedly,
every request got an answer, the sampled peak stayed under the budget, every model that was asked
for could be loaded at least once, pinned models became ready, no request failed with another 5xx
(a model that cannot even build proves nothing), and at most `max_refused_percent` of the requests
were refused with 503 memory_budget_exceeded. Anything else: DOES NOT FIT, every reason listed.
"""
from __future__ import annotations

import json
import math
import statistics
import textwrap
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

BUDGET_REFUSED = "memory_budget_exceeded"
EVENT_STYLE = {  # kind: (colour, marker, legend label)
    "load": ("tab:green", "^", "model loaded"),
    "evict": ("tab:orange", "v", "model evicted"),
    "unload": ("tab:gray", "v", "model unloaded (admin/TTL)"),
    "refuse": ("tab:red", "x", "load refused (503)"),
    "oom_kill": ("black", "X", "OOM kill"),
    "worker_boot": ("tab:blue", "|", "worker booted"),
}


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered) / 100)))  # q * n first: exact for integer q
    return ordered[rank - 1]


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Add report['summary'] and report['verdict'] (and return the summary)."""
    samples = report.get("samples", [])
    requests_ = report.get("requests", [])
    events = report.get("events", [])
    budget = report["budget_mb"]
    start, end = report.get("workload_start_s"), report.get("workload_end_s")

    working_set = [s["working_set_mb"] for s in samples]
    peak = max(working_set, default=0.0)
    idle = [s["working_set_mb"] for s in samples if start is not None and s["t_s"] < start]
    # Steady: the median of the second half of the workload, once loads and evictions have settled.
    second_half = [s["working_set_mb"] for s in samples
                    if start is not None and end is not None and (start + end) / 2 <= s["t_s"] <= end]
    steady = statistics.median(second_half) if second_half else None

    kinds = Counter(e["kind"] for e in events)
    boots = kinds["worker_boot"]
    restarts = max(0, boots - report["workers"])
    unexpected_restarts = max(0, restarts - kinds["worker_recycle"] - kinds["worker_self_recycle"])

    statuses = Counter(str(r["status"]) for r in requests_)
    refused_budget = sum(1 for r in requests_ if r["error_code"] == BUDGET_REFUSED)
    refused_budget_tts = sum(1 for r in requests_ if r["error_code"] == BUDGET_REFUSED and r["call"].startswith("tts"))
    expected_errors = Counter(r["error_code"] for r in requests_ if r.get("expected"))
    no_response = statuses.get("0", 0)
    by_call: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in requests_:
        by_call[r["call"]].append(r)
    endpoints = {}
    for name, rows in sorted(by_call.items()):
        answered = [r["seconds"] for r in rows if r["status"]]
        endpoints[name] = {"count": len(rows), "statuses": dict(Counter(str(r["status"]) for r in rows)),
                           "p50_s": _round(percentile(answered, 50), 4), "p95_s": _round(percentile(answered, 95), 4)}

    registry = report.get("registry")
    if registry is None:  # server gone: fall back to what its log said
        registry = {"loads": dict(Counter(e["model"] for e in events if e["kind"] == "load")),
                    "refusals": dict(Counter(e["model"] for e in events if e["kind"] == "refuse")),
                    "unloads": {}, "source": "server log"}
        for e in events:
            if e["kind"] in ("evict", "unload"):
                reason = e["detail"].removeprefix("reason=") or e["kind"]
                registry["unloads"].setdefault(reason, {}).setdefault(e["model"], 0)
                registry["unloads"][reason][e["model"]] += 1
    else:
        registry = {**registry, "source": "/metrics"}
    loads = sum(registry["loads"].values())
    evictions = sum(registry["unloads"].get("evicted", {}).values())
    other_unloads = sum(sum(v.values()) for k, v in registry["unloads"].items() if k != "evicted")
    refusals = sum(registry["refusals"].values())

    # Memory figures are whole MB, rounded here once: the verdict, the tables and report.json
    # all show these same numbers (the samples keep their own precision).
    peak_mb = _mb(peak)
    summary = {
        "meter": report["meter"]["kind"], "budget_mb": budget, "peak_mb": peak_mb,
        "kernel_peak_usage_mb": _mb(report.get("kernel_peak_mb")),
        "peak_usage_mb": _mb(max((s["usage_mb"] for s in samples), default=0.0)),
        "peak_rss_sum_mb": _mb(max((s["rss_mb"] for s in samples), default=0.0)),
        "idle_mb": _mb(statistics.median(idle) if idle else None), "steady_mb": _mb(steady),
        "samples": len(samples), "oom_kills": report.get("oom_kills"), "worker_boots": boots,
        "worker_restarts": restarts, "unexpected_restarts": unexpected_restarts,
        "worker_recycles": kinds["worker_recycle"], "worker_self_recycles": kinds["worker_self_recycle"],
        "requests": len(requests_), "statuses": dict(sorted(statuses.items())),
        "no_response": no_response, "refused_budget": refused_budget, "refused_budget_tts": refused_budget_tts,
        "expected_errors": dict(expected_errors), "endpoints": endpoints,
        "models_loaded": loads, "models_evicted": evictions, "models_unloaded": other_unloads,
        "models_refused": refusals, "registry": registry, "ready": report.get("ready"),
        "alive_at_end": report.get("alive_at_end"),
    }

    reasons = []
    if summary["oom_kills"]:
        reasons.append(f"{summary['oom_kills']} OOM kill(s) in the {budget:.0f} MB cgroup")
    if report.get("alive_at_end") is False:
        reasons.append(f"the server died during the run (exit code {report.get('server_exit_code')})")
    if unexpected_restarts:
        reasons.append(f"{unexpected_restarts} worker restart(s) not explained by MAX_REQUESTS")
    if no_response:
        reasons.append(f"{no_response} request(s) got no response (connection reset or timeout)")
    if peak > budget:
        reasons.append(f"peak {peak_mb} MB is over the {budget:.0f} MB budget")
    if report.get("ready") == "not ready":
        reasons.append("pinned models (PRELOAD_MODELS) never became ready")
    for model, count in sorted(registry["refusals"].items()):
        if count and not registry["loads"].get(model):
            reasons.append(f"model {model} was refused {count} time(s) and never loaded")
    if requests_ and 100 * refused_budget / len(requests_) > report["options"]["max_refused_percent"]:
        reasons.append(f"{refused_budget} of {len(requests_)} requests ({100 * refused_budget / len(requests_):.0f}%) "
                       f"refused with 503 {BUDGET_REFUSED}")
    # A model that fails to build (weights missing) or a 500 proves nothing about memory: not a fit.
    failures = Counter(r["error_code"] or str(r["status"]) for r in requests_
                       if r["status"] >= 500 and r["error_code"] not in (BUDGET_REFUSED, "model_disabled")
                       and not r.get("expected"))
    if failures:
        reasons.append(f"{sum(failures.values())} request(s) failed with 5xx ("
                       + ", ".join(f"{code} {n}" for code, n in failures.most_common()) + "; see server.log)")
    if "requests" not in report:
        reasons.append("the workload did not run (see the error above and server.log)")

    warnings = []
    missing = sum(1 for r in requests_ if r["status"] in (404, 405) and not r["call"].startswith("bad_"))
    if missing:
        warnings.append(f"{missing} request(s) answered 404/405: endpoints missing from this app?")
    if report["meter"]["kind"] == "process-tree":
        warnings.append(report["meter"]["description"])
    if report.get("leftover_pids"):
        warnings.append(f"processes left after the server stopped were killed: {report['leftover_pids']}")

    where = f"{budget:.0f} MB"
    verdict = f"FITS in {where} (peak {peak_mb} MB)" if not reasons else f"DOES NOT FIT: {'; '.join(reasons)} (peak {peak_mb} MB)"
    if report["meter"]["kind"] == "process-tree":
        verdict += " [no cgroup: process-tree PSS, budget not enforced]"
    summary["reasons"], summary["warnings"] = reasons, warnings
    report["summary"], report["verdict"] = summary, verdict
    return summary


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _mb(value: float | None) -> int | None:
    """A memory figure as shown everywhere in the report: whole MB."""
    return None if value is None else round(value)


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def format_table(report: dict[str, Any]) -> str:
    """The terminal report: memory, workers, requests, latency per endpoint, registry, verdict."""
    s = report["summary"]
    config = " ".join(f"{k}={v}" for k, v in report["options"]["env"].items()) or "(environment defaults)"
    fallback = s["meter"] == "process-tree"
    measure = "summed PSS (100 ms)" if fallback else "working set (100 ms)"
    lines = [
        f"budget check: {report['label'] or config}",
        f"  app {report['options']['app']}, profile {report['options']['profile']}, "
        f"{report['options']['concurrency']} clients, {report['options']['duration_s']:g} s, workers {report['workers']}",
        f"  meter: {report['meter']['description']}",
        "",
        "memory (MB)                      value",
        f"  budget                         {s['budget_mb']:.0f}",
        f"  peak {measure:<26}{_fmt(s['peak_mb'])}",
        f"  steady (median, 2nd half)      {_fmt(s['steady_mb'])}",
        f"  idle before workload           {_fmt(s['idle_mb'])}",
        *([] if fallback else [f"  peak usage incl. cache         {_fmt(s['peak_usage_mb'])}",
                               f"  kernel peak usage              {_fmt(s['kernel_peak_usage_mb'])}"]),
        f"  peak summed RSS                {_fmt(s['peak_rss_sum_mb'])}",
        f"  OOM kills                      {_fmt(s['oom_kills'])}",
        f"  worker restarts                {s['worker_restarts']} ({s['unexpected_restarts']} unexpected, "
        f"{s['worker_recycles']} MAX_REQUESTS recycles, {s['worker_self_recycles']} asked by the registry)",
        "",
        f"requests: {s['requests']}  by status: " + ", ".join(
            f"{'no response' if k == '0' else k}: {v}" for k, v in s["statuses"].items()),
        "",
        f"  {'endpoint':<18} {'count':>6} {'p50 ms':>8} {'p95 ms':>8}  statuses",
    ]
    for name, e in s["endpoints"].items():
        p50 = "-" if e["p50_s"] is None else f"{1000 * e['p50_s']:.0f}"
        p95 = "-" if e["p95_s"] is None else f"{1000 * e['p95_s']:.0f}"
        statuses = " ".join(f"{k}x{v}" for k, v in sorted(e["statuses"].items()))
        lines.append(f"  {name:<18} {e['count']:>6} {p50:>8} {p95:>8}  {statuses}")
    reg = s["registry"]
    lines += [
        "",
        f"models (from {reg['source']}): loaded {s['models_loaded']} {_per_model(reg['loads'])}, "
        f"evicted {s['models_evicted']} {_per_model(reg['unloads'].get('evicted', {}))}, "
        f"other unloads {s['models_unloaded']}, refused {s['models_refused']} {_per_model(reg['refusals'])}; "
        f"requests refused 503 {BUDGET_REFUSED}: {s['refused_budget']} ({s['refused_budget_tts']} of them TTS)",
    ]
    if s["expected_errors"]:
        lines.append("answered as designed (not failures): " + ", ".join(
            f"{code} {n}" for code, n in sorted(s["expected_errors"].items())))
    lines += [f"warning: {w}" for w in s["warnings"]]
    lines += ["", report["verdict"]]
    return "\n".join(lines)


def _per_model(counts: dict[str, int]) -> str:
    shown = {k: v for k, v in counts.items() if v}
    return "(" + ", ".join(f"{k} {v}" for k, v in sorted(shown.items())) + ")" if shown else ""


def plot(report: dict[str, Any], path: Path) -> None:
    """Memory over time against the budget, with model loads, evictions, refusals and kills marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, s = report.get("samples", []), report["summary"]
    budget, margin = report["budget_mb"], report["margin_mb"]
    t = [x["t_s"] for x in samples]
    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    ax.plot(t, [x["working_set_mb"] for x in samples], color="tab:blue", lw=1.5,
            label="working set (what the registry budgets)" if s["meter"] != "process-tree" else "summed PSS")
    ax.plot(t, [x["usage_mb"] for x in samples], color="tab:blue", lw=0.8, alpha=0.35,
            label="usage incl. page cache" if s["meter"] != "process-tree" else "summed RSS")
    ax.axhline(budget, color="tab:red", lw=1.5, ls="--", label=f"budget {budget:.0f} MB")
    if margin:
        ax.axhline(budget - margin, color="tab:red", lw=0.8, ls=":", label=f"admission limit (margin {margin:.0f} MB)")
    if report.get("workload_start_s") is not None and report.get("workload_end_s") is not None:
        ax.axvspan(report["workload_start_s"], report["workload_end_s"], color="0.92", zorder=0, label="workload")
    top = max(budget, max((x["usage_mb"] for x in samples), default=0.0)) * 1.08
    for kind, (colour, marker, label) in EVENT_STYLE.items():
        times = [e["t_s"] for e in report.get("events", []) if e["kind"] == kind]
        if not times:
            continue
        for x in times:
            ax.axvline(x, color=colour, lw=0.6, alpha=0.5)
        ax.scatter(times, [top * 0.97] * len(times), color=colour, marker=marker, s=40, zorder=5,
                   label=f"{label} ({len(times)})")
    ax.set_ylim(0, top)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("MB")
    title = f"{report['label'] or report['options']['app']} ({s['meter']})\n" + textwrap.fill(report["verdict"], 130)
    ax.set_title(title, fontsize=8)
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """report.json, report.txt and report.png in out_dir; returns their paths."""
    paths = {"json": out_dir / "report.json", "text": out_dir / "report.txt", "plot": out_dir / "report.png"}
    paths["json"].write_text(json.dumps(report, indent=1, default=str))
    paths["text"].write_text(format_table(report) + "\n")
    plot(report, paths["plot"])
    return paths


MATRIX_HEADER = ("| configuration | meter | peak MB | steady MB | OOM kills | restarts (MAX_REQUESTS / asked) | requests "
                 "| 503 budget (TTS) | loads / evictions / refusals | verdict |\n|---|---|---|---|---|---|---|---|---|---|")


def markdown_row(report: dict[str, Any]) -> str:
    s = report.get("summary")
    label = report.get("label") or "(defaults)"
    if s is None:
        return f"| {label} | - | - | - | - | - | - | - | - | ERROR: {report.get('error', '?')} |"
    verdict = report["verdict"].replace("|", "/")
    return (f"| {label} | {s['meter']} | {_fmt(s['peak_mb'])} | {_fmt(s['steady_mb'])} | {_fmt(s['oom_kills'])} | "
            f"{s['worker_restarts']} ({s['worker_recycles']} / {s['worker_self_recycles']}) | {s['requests']} | "
            f"{s['refused_budget']} ({s['refused_budget_tts']}) | "
            f"{s['models_loaded']} / {s['models_evicted']} / {s['models_refused']} | {verdict} |")

"""The budget check's verdict and report, on synthetic runs: exact, no server, no cgroup."""
from __future__ import annotations

import json

import pytest

from scripts.budget import report as reporting
from scripts.budget.server import parse_event

BUDGET_MB = 300.0
MARGIN_MB = 48.0


def sample(t_s: float, mb: float) -> dict:
    return {"t_s": t_s, "usage_mb": mb + 1, "working_set_mb": mb, "rss_mb": mb + 30, "pss_mb": None}


def request(call: str, status: int, seconds: float = 0.1, code: str | None = None, expected: bool = False) -> dict:
    return {"call": call, "started_s": 3.0, "seconds": seconds, "status": status, "error_code": code, "detail": None,
            "expected": expected}


def event(t_s: float, kind: str, model: str | None = None, detail: str = "") -> dict:
    return {"t_s": t_s, "kind": kind, "model": model, "detail": detail}


def raw_report(**overrides) -> dict:
    """A clean run as scripts.budget.check.run_check returns it: 1 worker, boot 0-2 s, workload 3-7 s."""
    samples = [sample(t / 10, 40.0) for t in range(0, 30)]  # idle at 40 MB
    samples += [sample(3 + t / 10, 100.0 + t) for t in range(0, 20)]  # ramp 100 -> 119 in the first half
    samples += [sample(5 + t / 10, 150.0) for t in range(0, 21)]  # steady 150 in the second half
    samples += [sample(7.1 + t / 10, 60.0) for t in range(0, 20)]  # cooldown
    report = {
        "label": "fits", "budget_mb": BUDGET_MB, "margin_mb": MARGIN_MB, "workers": 1,
        "options": {"env": {"WORKERS": "1"}, "app": "tests.budget_app:create_app()", "profile": "fake",
                    "concurrency": 3, "duration_s": 4.0, "max_refused_percent": 5.0},
        "meter": {"kind": "cgroup-v1", "description": "cgroup-v1 /sys/fs/cgroup/memory/budget-check-1-2 limit 300 MB"},
        "ready": "ready", "workload_start_s": 3.0, "workload_end_s": 7.0, "alive_at_end": True,
        "samples": samples, "oom_kills": 0, "kernel_peak_mb": 151.0, "server_exit_code": 0, "leftover_pids": [],
        "events": [event(0.5, "worker_boot", detail="pid=11"), event(3.2, "load", "tts"),
                   event(4.0, "load", "language"), event(4.5, "evict", "tts", "reason=evicted")],
        "requests": [request("fake_tts", 200, s) for s in (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)]
        + [request("bad_body", 400, code="bad_request"), request("fake_language", 200, 0.2)],
        "registry": {"loads": {"tts": 1, "language": 1}, "unloads": {"evicted": {"tts": 1}}, "refusals": {}},
    }
    report.update(overrides)
    return report


def summarised(**overrides) -> dict:
    report = raw_report(**overrides)
    reporting.summarise(report)
    return report


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 11)]
    assert reporting.percentile(values, 50) == 5.0
    assert reporting.percentile(values, 95) == 10.0
    assert reporting.percentile([3.0], 95) == 3.0
    assert reporting.percentile([], 50) is None


def test_a_clean_run_fits_with_its_figures():
    report = summarised()
    s = report["summary"]
    assert report["verdict"] == "FITS in 300 MB (peak 150 MB)"
    assert s["reasons"] == [] and s["warnings"] == []
    assert (s["peak_mb"], s["steady_mb"], s["idle_mb"]) == (150.0, 150.0, 40.0)
    assert s["peak_usage_mb"] == 151.0 and s["kernel_peak_usage_mb"] == 151.0
    assert (s["worker_boots"], s["worker_restarts"], s["unexpected_restarts"]) == (1, 0, 0)
    assert s["statuses"] == {"200": 11, "400": 1}
    assert s["endpoints"]["fake_tts"] == {"count": 10, "statuses": {"200": 10}, "p50_s": 0.05, "p95_s": 0.1}
    assert (s["models_loaded"], s["models_evicted"], s["models_refused"]) == (2, 1, 0)
    assert s["registry"]["source"] == "/metrics"


def test_an_oom_kill_and_the_worker_it_cost_do_not_fit():
    report = raw_report(oom_kills=1)
    report["events"] += [event(5.0, "oom_kill", detail="total=1"), event(5.1, "worker_boot", detail="pid=12")]
    reporting.summarise(report)
    s = report["summary"]
    assert report["verdict"] == ("DOES NOT FIT: 1 OOM kill(s) in the 300 MB cgroup; "
                                 "1 worker restart(s) not explained by MAX_REQUESTS (peak 150 MB)")
    assert (s["worker_restarts"], s["unexpected_restarts"]) == (1, 1)


def test_max_requests_recycles_are_restarts_but_not_unexpected():
    report = raw_report()
    report["events"] += [event(5.0, "worker_recycle"), event(5.1, "worker_boot", detail="pid=12")]
    reporting.summarise(report)
    assert report["summary"]["worker_restarts"] == 1 and report["summary"]["unexpected_restarts"] == 0
    assert report["verdict"].startswith("FITS")


def test_a_model_refused_and_never_loaded_does_not_fit_even_without_kills():
    refused = [request("fake_ai_voice", 503, code="memory_budget_exceeded") for _ in range(3)]
    report = summarised(requests=raw_report()["requests"] * 5 + refused,
                        registry={"loads": {"tts": 1}, "unloads": {}, "refusals": {"ai_voice": 3}})
    s = report["summary"]
    assert s["oom_kills"] == 0 and s["refused_budget"] == 3 and s["models_refused"] == 3
    assert report["verdict"] == "DOES NOT FIT: model ai_voice was refused 3 time(s) and never loaded (peak 150 MB)"


def test_refusals_above_the_allowed_share_do_not_fit():
    refused = [request("fake_tts", 503, code="memory_budget_exceeded")]
    report = summarised(requests=raw_report()["requests"] + refused,  # 1 of 13 = 8 % > 5 %
                        registry={"loads": {"tts": 2}, "unloads": {}, "refusals": {"tts": 1}})
    assert report["summary"]["reasons"] == ["1 of 13 requests (8%) refused with 503 memory_budget_exceeded"]
    allowed = raw_report(requests=raw_report()["requests"] + refused,
                         registry={"loads": {"tts": 2}, "unloads": {}, "refusals": {"tts": 1}})
    allowed["options"]["max_refused_percent"] = 10.0
    reporting.summarise(allowed)
    assert allowed["verdict"].startswith("FITS")


def test_an_error_a_call_is_designed_to_get_is_no_failure_and_tts_refusals_are_counted_apart():
    """The life-cycle profile calls analysis models that have no export: 503 model_unavailable is their answer."""
    rows = raw_report()["requests"] + [request("language", 503, code="model_unavailable", expected=True),
                                       request("tts_long", 503, code="memory_budget_exceeded")]
    report = summarised(requests=rows, options={**raw_report()["options"], "max_refused_percent": 50.0})
    s = report["summary"]
    assert report["verdict"] == "FITS in 300 MB (peak 150 MB)"
    assert s["expected_errors"] == {"model_unavailable": 1} and s["refused_budget_tts"] == 1
    assert "answered as designed (not failures): model_unavailable 1" in reporting.format_table(report)
    unexpected = summarised(requests=rows[:-2] + [request("language", 503, code="model_unavailable")])
    assert "1 request(s) failed with 5xx (model_unavailable 1" in unexpected["verdict"]


def test_a_self_recycle_is_an_explained_restart():
    events = raw_report()["events"] + [event(5.0, "worker_self_recycle", "tts", "pid=11 reason=memory_retained"),
                                       event(5.5, "worker_boot", detail="pid=12")]
    s = summarised(events=events)["summary"]
    assert (s["worker_restarts"], s["unexpected_restarts"], s["worker_self_recycles"]) == (1, 0, 1)
    line = "2026 WARNING event=worker_recycle pid=11 reason=memory_retained model=tts retained_mb=160 need_mb=160"
    assert parse_event(line, 1.0).kind == "worker_self_recycle"


def test_unanswered_requests_other_5xx_and_a_dead_server_are_each_a_reason():
    report = summarised(alive_at_end=False, server_exit_code=-9,
                        requests=[request("fake_tts", 0, 5.0, code="ConnectionError"),
                                  request("fake_tts", 500, code="internal_error"),
                                  request("fake_tts", 502)])
    reasons = report["summary"]["reasons"]
    assert reasons == ["the server died during the run (exit code -9)",
                       "1 request(s) got no response (connection reset or timeout)",
                       "2 request(s) failed with 5xx (internal_error 1, 502 1; see server.log)"]
    assert report["summary"]["endpoints"]["fake_tts"]["p50_s"] == 0.1  # unanswered ones have no latency


def test_pinned_models_that_never_became_ready_do_not_fit():
    assert summarised(ready="not ready")["summary"]["reasons"] == ["pinned models (PRELOAD_MODELS) never became ready"]


def test_a_sampled_peak_over_the_budget_does_not_fit():
    report = raw_report()
    report["samples"].append(sample(6.0, 320.0))
    reporting.summarise(report)
    assert report["verdict"] == "DOES NOT FIT: peak 320 MB is over the 300 MB budget (peak 320 MB)"


def test_without_a_cgroup_the_verdict_and_warnings_say_so():
    description = "no cgroup (--no-cgroup given): memory is the process tree's summed PSS"
    report = summarised(meter={"kind": "process-tree", "description": description}, oom_kills=None)
    assert report["verdict"] == "FITS in 300 MB (peak 150 MB) [no cgroup: process-tree PSS, budget not enforced]"
    assert report["summary"]["oom_kills"] is None
    assert report["summary"]["warnings"] == [description]


def test_registry_counts_come_from_the_log_when_metrics_are_gone():
    report = summarised(registry=None, alive_at_end=False, events=raw_report()["events"] + [
        event(6.0, "refuse", "ai_voice"), event(6.5, "unload", "language", "reason=admin")])
    s = report["summary"]
    assert s["registry"] == {"loads": {"tts": 1, "language": 1}, "refusals": {"ai_voice": 1},
                             "unloads": {"evicted": {"tts": 1}, "admin": {"language": 1}}, "source": "server log"}
    assert (s["models_loaded"], s["models_evicted"], s["models_unloaded"], s["models_refused"]) == (2, 1, 1, 1)


def test_a_run_whose_workload_never_started_does_not_fit():
    report = raw_report()
    del report["requests"]
    reporting.summarise(report)
    assert "the workload did not run (see the error above and server.log)" in report["summary"]["reasons"]


def test_missing_endpoints_are_warned_about_but_bad_inputs_are_not():
    report = summarised(requests=raw_report()["requests"] + [request("fake_tts", 404, code="not_found"),
                                                             request("bad_model", 404, code="not_found")])
    assert report["summary"]["warnings"] == ["1 request(s) answered 404/405: endpoints missing from this app?"]


def test_the_table_ends_with_the_verdict_and_lists_every_endpoint():
    report = summarised()
    table = reporting.format_table(report)
    assert table.splitlines()[-1] == "FITS in 300 MB (peak 150 MB)"
    assert "  fake_tts               10       50      100  200x10" in table
    assert "  OOM kills                      0" in table


def test_markdown_rows_for_a_report_and_for_a_failed_check():
    row = reporting.markdown_row(summarised())
    assert row == "| fits | cgroup-v1 | 150 | 150 | 0 | 0 (0 / 0) | 12 | 0 (0) | 2 / 1 / 0 | FITS in 300 MB (peak 150 MB) |"
    assert row.count("|") == reporting.MATRIX_HEADER.splitlines()[0].count("|")
    failed = reporting.markdown_row({"label": "broken", "error": "server exited with code 3"})
    assert failed == "| broken | - | - | - | - | - | - | - | - | ERROR: server exited with code 3 |"


def test_write_makes_json_text_and_a_png(tmp_path):
    report = summarised()
    paths = reporting.write(report, tmp_path)
    assert json.loads(paths["json"].read_text())["verdict"] == report["verdict"]
    assert paths["text"].read_text().rstrip().endswith(report["verdict"])
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("line", "expected"), [
    ("INFO backend.registry: event=model_loaded model=tts load_s=0.10 rss_before_mb=40.0 rss_after_mb=120.0",
     ("load", "tts", "")),
    ("INFO backend.registry: event=model_unloaded model=tts reason=evicted rss_before_mb=1 rss_after_mb=1 freed_mb=0",
     ("evict", "tts", "reason=evicted")),
    ("INFO backend.registry: event=model_unloaded model=language reason=ttl rss_before_mb=1 rss_after_mb=1 freed_mb=0",
     ("unload", "language", "reason=ttl")),
    ("WARNING backend.registry: event=model_refused model=ai_voice needed_mb=400 used_mb=50 budget_mb=300",
     ("refuse", "ai_voice", "")),
    ("[2026-11-23 09:00:00 +0000] [123] [INFO] Booting worker with pid: 456", ("worker_boot", None, "pid=456")),
    ("[2026-11-23 09:00:00 +0000] [123] [ERROR] Worker (pid:456) was sent SIGKILL! Perhaps out of memory?",
     ("worker_killed", None, "pid=456 signal=SIGKILL")),
    ("[2026-11-23 09:00:00 +0000] [123] [CRITICAL] WORKER TIMEOUT (pid:456)", ("worker_timeout", None, "pid=456")),
])
def test_server_log_lines_become_events(line, expected):
    found = parse_event(line, 1.5)
    assert (found.kind, found.model, found.detail) == expected and found.t_s == 1.5


def test_other_log_lines_are_not_events():
    assert parse_event('127.0.0.1 "POST /fake/tts HTTP/1.1" 200 52 31ms', 1.0) is None

"""The performance page's headline table is what the kept reports say
(:mod:`loadtests.figures`): regenerated, it is unchanged; a figure a report lacks is "—"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests import figures


def test_the_table_on_the_page_is_what_the_kept_reports_give() -> None:
    page = figures.PAGE.read_text(encoding="utf-8")
    assert figures.rendered(page) == page, "stale: run python -m loadtests.figures"
    assert figures.main(["--check"]) == 0


def test_every_kept_report_has_a_headline() -> None:
    kept = {path.stem.partition("@")[0] for path in figures.KEPT.glob("*.json")}
    assert kept <= set(figures.HEADLINES), kept - set(figures.HEADLINES)


def report(tmp_path: Path, name: str, body: dict[str, object]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "at": "2026-11-27T12:00:00Z",
                                "machine": {"python": "3.11.7"}, "figures": body}))
    return path


def test_rows_come_from_the_report_and_missing_figures_show_as_a_dash(tmp_path: Path) -> None:
    report(tmp_path, "bench_eventlog", {"append_batched_events_per_s": 44123,
                                         "goal_batched_events_per_s": 25000})
    report(tmp_path, "bench_log_scale", {"runs": [{
        "mode": "log", "shards": 1, "sustained_events_per_s": 2000.0,
        "cpu_at_sustained": {"cpu_pct_of_one_core": {"log writers": 40.0, "log readers": 50.0,
                                                     "load generator": 1.0}}}],
        "goals": {"machine_noise": {"figures_indicative_only": True}}})
    table = figures.table(tmp_path).splitlines()
    assert any("| `bench_eventlog` | appends batched, events/s | 44,123 | ≥ 25,000 |" in line
               for line in table)
    assert any("| appends one by one, events/s | — |" in line for line in table)
    held = next(line for line in table if "events/s held" in line)
    assert "| 2,000 |" in held and "indicative: machine busy" in held
    cpu = next(line for line in table if "CPU per event" in line)
    assert "log writers 0.200, log readers 0.250" in cpu and "load generator" not in cpu
    assert not any("bench_latency" in line for line in table)  # not kept: no rows


def test_a_labelled_run_is_kept_beside_the_main_one_and_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports, kept = tmp_path / "reports", tmp_path / "kept"
    reports.mkdir()
    monkeypatch.setenv("VOXLINE_REPORTS_DIR", str(reports))
    monkeypatch.setattr(figures, "KEPT", kept)
    live = {"live_sessions": {"gateways": 2, "held_at_p99": 5000,
                              "sustained_events_per_s": 2000.0,
                              "cpu_at_sustained": {"cores": 16, "cpu_pct_of_one_core": {
                                  "gateways": 100.0, "load generator": 9.0}}}}
    report(reports, "bench_log_scale", live)
    assert figures.keep("bench_log_scale@16-cores") == kept / "bench_log_scale@16-cores.json"
    report(kept, "bench_log_scale", {"runs": []})
    names = [path.name for _, path in figures.kept_reports(kept)]
    assert names == ["bench_log_scale.json", "bench_log_scale@16-cores.json"]
    rows = [line for line in figures.table(kept).splitlines() if "16-cores" in line]
    assert "| live text sessions held at p99 ≤ 50 ms (live, 2 Gateway(s)) | 5,000 |" in rows[0]
    assert "16 cores" in rows[0] and "gateways 0.500" in rows[1]
    for wrong in ("nothing@16-cores", "bench_log_scale@../up"):
        with pytest.raises(SystemExit):
            figures.keep(wrong)
    # a labelled run of one part (--only) leaves out what it did not measure
    goals = {"webrtc_over_native_voice_p50": {"at_most": 1.1, "measured": 1.04},
             "voice_to_voice_p50_ms": {"at_most": 1000.0, "measured": None}}
    report(kept, "bench_latency@webrtc", {"goals": goals})
    report(kept, "bench_latency", {"goals": {"voice_to_voice_p50_ms": goals[
        "voice_to_voice_p50_ms"]}})
    latency = [line for line in figures.table(kept).splitlines() if "bench_latency" in line]
    labelled = [line for line in latency if "@webrtc" in line]
    assert len(labelled) == 1 and "| webrtc over native voice p50 | 1.040 |" in labelled[0]
    assert any("| — |" in line for line in latency if "@webrtc" not in line)  # the main's


def test_the_example_evaluation_report_is_the_kept_run_s_and_a_stale_one_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = figures.example_report()
    assert example is not None and example == figures.EXAMPLE.read_text(encoding="utf-8")
    assert "<svg" in example and "wer_vs_logged" in example
    monkeypatch.setattr(figures, "EXAMPLE", tmp_path / "evaluation.html")
    (tmp_path / "evaluation.html").write_text("edited by hand", encoding="utf-8")
    assert figures.main(["--check"]) == 1
    assert figures.main([]) == 0 and figures.main(["--check"]) == 0
    assert (tmp_path / "evaluation.html").read_text(encoding="utf-8") == example


def test_a_page_without_markers_is_refused() -> None:
    try:
        figures.rendered("# no markers here\n")
    except SystemExit as exc:
        assert "markers" in str(exc)
    else:
        raise AssertionError("a page without markers was rendered")


def test_the_engine_benchmarks_rows_read_their_reports_and_dash_what_is_missing(
        tmp_path: Path) -> None:
    report(tmp_path, "bench_threads", {"threads": [1, 2], "busy": 0, "stages": {
        "stt": {"1": {"wall_ms_mean": 171.2, "cpu_ms_mean": 270.4},
                "2": {"wall_ms_mean": 187.0}}}})  # a CPU figure lost: a dash
    report(tmp_path, "bench_llm_parallel", {"tokens": 64, "threads": 2, "raw": [
        {"k": 2, "tokens_per_s_total": 47.6, "tokens_per_s_per_sequence": 23.8,
         "sequences_same_as_alone": 1},
        {"k": 1, "tokens_per_s_total": 39.1, "tokens_per_s_per_sequence": 39.1,
         "sequences_same_as_alone": 1}]})
    report(tmp_path, "bench_vad", {"model_us_per_frame": {"silero-vad": {"1": 110.2, "32": 55}},
                                   "idle": {"batched": [
                                       {"sessions": 50, "cpu_ms_per_session_s_at_real_time":
                                        1.966}]}})
    table = "\n".join(figures.table(tmp_path).splitlines())
    assert "STT (tiny.en, the turn corpus): ms of wall / CPU a call at 1 → 2 thread(s) | " \
           "171 / 270 → 187 / — |" in table
    assert "LLM (Gemma 3 270M" in table  # a stage the report lacks still has its row
    assert "tokens/s in all at k = 1 / 2 | 39.1 / 47.6 |" in table  # ordered by k
    assert "as decoded alone at k = 1 / 2 | 1 of 1 / 1 of 2 |" in table
    assert "µs a frame at 1 / 32 frame(s) a call | 110 / 55 |" in table
    assert "the silence gate on (the default): ms of CPU a session-second at 50 sessions " \
           "| 1.97 |" in table


def test_the_transcriber_benchmarks_rows(tmp_path: Path) -> None:
    report(tmp_path, "bench_stt_batch", {"repeats": 3, "whisper-tiny.en": {"requests": {
        "1": {"on": {"last_done_s": 0.116, "cpu_s_last_round": 0.3},
              "off": {"last_done_s": 0.118, "cpu_s_last_round": 0.3}},
        "4": {"on": {"last_done_s": 0.318, "cpu_s_last_round": 0.8},
              "off": {"last_done_s": 0.43, "cpu_s_last_round": 1.0}},
        "batch_sizes_on": {"1": 1, "4": 4}}}})
    report(tmp_path, "bench_stt_window", {"model": "whisper-tiny.en", "language": "en",
                                          "windows": {"30": {"wer": 0.198, "france_misheard": 0,
                                                             "france_renditions": 30},
                                                      "15": {"wer": 0.171}}})
    table = figures.table(tmp_path)
    assert "all done after (s), batched, N = 1 / 4 | 0.116 / 0.318 |" in table
    assert "all done after (s), one by one, N = 1 / 4 | 0.118 / 0.430 |" in table
    assert "batched ÷ one by one, N = 1 / 4 | 1.00 / 0.80 |" in table
    assert "word error rate at a window of 30 / 15 s | 19.8 % / 17.1 % |" in table
    assert "the France question misheard at 30 / 15 s | 0 of 30 / — |" in table


def test_the_latency_rows_say_where_the_time_went(tmp_path: Path) -> None:
    report(tmp_path, "bench_latency", {
        "goals": {"voice_to_voice_p50_ms": {"at_most": 1000.0, "measured": 559.5}},
        "voice_to_voice": {"voice_to_voice_ms": {"p50": 559.5, "p95": 600.5},
                           "stages_p50_ms": {"vad_tail_and_audio_in": 286.6, "stt": 5.0}},
        "orchestration_overhead": {"dispatch_ms": {"p50": 1.0}},
        "webrtc_vs_native": {"native_ms": {"p50": 572.1, "p95": 674.7},
                             "webrtc_ms": {"p50": 664.3},
                             "paired": {"added_p50_ms": 21.04, "added_ms": [21.04]}},
        "telephony_vs_native": {"native_ms": {"p50": 500.0}, "telephony_ms": {"p50": 510.0}}})
    table = figures.table(tmp_path)
    assert "| voice to voice p50 ms | 560 | ≤ 1000.0 |" in table
    assert ("the server's parts p50: vad tail and audio in / stt | 560 / 600; 286.6 / 5.0 |"
            in table)
    assert "ingress / dispatch / delivery | — / 1.0 / — |" in table
    assert "webrtc against the native socket, voice-to-voice p50 / p95, ms | 664 / — " \
           "against 572 / 675 |" in table
    assert "| webrtc less native, each pair asking the same question, p50 ms | +21.0 |" in table
    assert "telephony less native" not in table  # a report from before pairs were kept
    assert "text in → first audio" not in table  # no text turns in this report: no row


def test_judged_goals_and_the_log_footprint_rows(tmp_path: Path) -> None:
    report(tmp_path, "bench_limits", {"goals": {
        "turn_40_within_1.5x_of_turn_2": {"value": 1.31, "met": True},
        "idle_sockets_per_gateway_at_least_1000": {"value": 1200, "met": True},
        "gateway_rss_flat_within_10pct_over_300_turns": {"value": None, "met": None}}})
    report(tmp_path, "log_footprint", {"kinds": {"voice": {
        "events_per_turn": 19.0, "events_per_s": 3.24,
        "stream_memory_bytes_per_turn": 191_000,
        "stream_memory_bytes_per_session_hour": 116_000_000}, "text-only": {}}})
    table = figures.table(tmp_path)
    assert "| turn 40 within 1.5x of turn 2 | 1.31 (met) |" in table
    assert "| idle sockets per gateway at least 1000 | 1,200 (met) |" in table
    assert "| gateway rss flat within 10pct over 300 turns | — |" in table
    assert "stream MB per session-hour | 19.0, 3.2, 191.0, 116.0 |" in table
    assert "| `log_footprint` | text-only session: " in table and "| —, —, —, — |" in table


def test_the_capacity_rows_show_the_idle_floor_and_an_idle_call(tmp_path: Path) -> None:
    report(tmp_path, "capacity", {
        "sessions_held": 4, "steps": [],
        "idle_sessions": {"machine_cpu_percent": {"no_session": 12.6,
                                                  "per_idle_session": 1.234}},
        "idle_calls": {"cpu_percent_per_idle_call": {"Gateway": 3.9},
                       "media_cpu_percent_per_call": None}})
    table = figures.table(tmp_path)
    assert "one idle hands-free session sending silence: % of a core (the whole machine) " \
           "| 12.6, then 1.23 each |" in table
    assert "its media path's own (less an idle socket session's) | 3.90; — |" in table


def test_the_capacity_rows_show_the_apps_floor_and_each_step_beyond_it(tmp_path: Path) -> None:
    report(tmp_path, "capacity", {
        "sessions_held": 4,
        "steps": [{"sessions": 1}, {"sessions": 4}],
        "stage_profile": {"non_model_cpu_s_per_turn": {"1": 0.31, "4": 0.18},
                          "idle_floor": {"seconds": 15.0, "non_model_cpu_percent": 4.87},
                          "non_model_cpu_s_per_turn_beyond_floor": {"1": 0.12, "4": None}}})
    table = figures.table(tmp_path)
    assert "then each step's CPU-s per voice turn beyond that floor | 4.87; 0.12 / — |" in table

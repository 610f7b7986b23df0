"""The capacity runner's PNG plots (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(report: dict[str, Any], out: Path) -> list[Path]:
    """``<out>_steps.png`` (figures against concurrent sessions) and ``<out>_timeline.png``
    (per deployment CPU, RSS, replicas and events/s over time, steps and the idle-session
    window shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = report["steps"]
    sessions = [s["sessions"] for s in steps]
    written: list[Path] = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    latency, errors, rate = axes
    for key, label in (("voice_to_voice_ms", "voice-to-voice"), ("ttfa_ms", "TTFA (server)")):
        for q, style in (("p50", "-o"), ("p95", "--o")):
            values = [(s[key] or {}).get(q) for s in steps]
            latency.plot(sessions, values, style, label=f"{label} {q}")
    idle = report.get("idle_voice_to_voice_p95_ms")
    if idle:
        latency.axhline(2 * idle, color="grey", linestyle=":", label="2× idle v2v p95")
    held = report.get("sessions_held")
    if held:
        latency.axvline(held, color="green", linestyle=":", label=f"held: {held}")
    latency.set(xlabel="concurrent sessions", ylabel="ms", title="latency")
    latency.legend(fontsize=7)
    errors.plot(sessions, [s["failed_turns"] for s in steps], "-o", label="failed turns")
    errors.plot(sessions, [s["refusals"] for s in steps], "-o", label="refusals (overloaded)")
    errors.plot(sessions, [s["completed_turns"] for s in steps], "-o", label="completed turns")
    errors.set(xlabel="concurrent sessions", ylabel="turns per step", title="outcomes")
    errors.legend(fontsize=7)
    rate.plot(sessions, [s["events_per_s"] for s in steps], "-o")
    rate.set(xlabel="concurrent sessions", ylabel="events/s", title="events delivered per second")
    fig.suptitle(report.get("title", "Voxline capacity"), fontsize=10)
    fig.tight_layout()
    path = out.with_name(out.name + "_steps.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    samples = report["samples"]
    if samples:
        fig, axes = plt.subplots(4, 1, figsize=(12, 11), sharex=True)
        times = [s["t"] for s in samples]
        names = sorted({n for s in samples for n in s["replicas"]})
        for ax, key, ylabel in ((axes[0], "cpu_percent", "CPU % (100 = a core)"),
                                (axes[1], "rss_mb", "RSS MiB"),
                                (axes[2], "replicas", "replicas")):
            for name in names:
                ax.plot(times, [s[key].get(name, 0) for s in samples], label=name)
            ax.set_ylabel(ylabel)
        axes[0].legend(fontsize=7, ncol=3)
        axes[3].plot(times, [s.get("events_per_s", 0) for s in samples])
        axes[3].set(ylabel="events/s", xlabel="seconds since start")
        for step in steps:
            for ax in axes:
                ax.axvspan(step["t_start"], step["t_end"], alpha=0.06, color="blue")
            axes[0].text(step["t_start"], axes[0].get_ylim()[1] * 0.92, f"{step['sessions']}",
                         fontsize=7)
        idle = report.get("idle_sessions")
        if idle:
            for ax in axes:
                ax.axvspan(idle["t_window_start"], idle["t_end"], alpha=0.08, color="grey")
            axes[0].text(idle["t_window_start"], axes[0].get_ylim()[1] * 0.92,
                         f"{idle['connected']} idle", fontsize=7)
        fig.suptitle("per deployment over time (shaded: steps, labelled by sessions; grey: "
                     "idle sessions)", fontsize=10)
        fig.tight_layout()
        path = out.with_name(out.name + "_timeline.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written

"""The log-scale benchmark's PNG (matplotlib, no display needed): events/s and p99 by
shards for the log alone and each Gateway count, and the live-session steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def series(figures: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    """Each kind of run (the log alone; through 1, 2 ... Gateways) -> shards -> its run."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for run in figures["runs"]:
        found.setdefault(label(run), {})[run["shards"]] = run
    return found


def label(run: dict[str, Any]) -> str:
    if run["mode"] == "log":
        return "log alone (no HTTP)"
    gateways = run["gateways"]
    return f"{gateways} Gateway{'s' if gateways != 1 else ''} (end to end)"


def plot(figures: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate, p99, live) = plt.subplots(1, 3, figsize=(16, 4.8))
    bound = figures["settings"]["p99_ms"]
    for name, runs in series(figures).items():
        shards = sorted(runs)
        rate.plot(shards, [runs[s]["sustained_events_per_s"] for s in shards], "-o", label=name)
        p99.plot(shards, [runs[s]["p99_ms_at_sustained"] for s in shards], "-o", label=name)
    rate.set(xlabel="shards (Redis Cluster primaries)", ylabel="events/s",
             title=f"sustained events/s at p99 ≤ {bound:g} ms")
    p99.axhline(bound, color="grey", linestyle=":", label=f"bound {bound:g} ms")
    p99.set(xlabel="shards (Redis Cluster primaries)", ylabel="ms",
            title="append-to-delivery p99 at the sustained step")
    for ax in (rate, p99):
        ax.set_xticks(sorted({run["shards"] for run in figures["runs"]}) or [1])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    steps = (figures.get("live_sessions") or {}).get("steps", [])
    if steps:
        sessions = [s["offered"] for s in steps]
        live.plot(sessions, [s["latency_ms"]["p99"] for s in steps], "-o", label="p99 ms")
        live.plot(sessions, [s["latency_ms"]["p50"] for s in steps], "--o", label="p50 ms")
        live.axhline(bound, color="grey", linestyle=":", label=f"bound {bound:g} ms")
        for s in steps:
            if not s["passed"]:
                live.annotate("failed", (s["offered"], s["latency_ms"]["p99"]), fontsize=7)
        live.legend(fontsize=7)
    live.set(xlabel="live sessions (sockets open, one turn a minute each)", ylabel="ms",
             title="live sessions on the largest cluster")
    title = "Voxline event log on a Redis Cluster (scripted engines)"
    noise = figures.get("goals", {}).get("machine_noise", {})
    if noise.get("figures_indicative_only"):
        title += (f" - indicative: other processes used up to "
                  f"{noise['others_max_pct_of_one_core']:.0f}% of a core")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

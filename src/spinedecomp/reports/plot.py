"""Session report plot: target vs measured force, angle, distraction, phases and events."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from spinedecomp.control.trajectory import Phase
from spinedecomp.core.units import lb_to_n, n_to_lb
from spinedecomp.session.summary import AlarmOut, EventOut
from spinedecomp.session.telemetry import COL

_PHASE_COLOURS = {Phase.RAMP_UP: "#e8f1fb", Phase.HOLD: "#d5e8d4", Phase.RAMP_DOWN: "#fdf0d5",
                  Phase.REST: "#f5f5f5", Phase.PAUSED: "#e1d5e7", Phase.RELEASE: "#f8cecc",
                  Phase.ENDING: "#fff2cc"}
MAX_POINTS = 20000


def _decimate(tel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    step = max(1, tel.shape[0] // MAX_POINTS)
    return tel[::step]


def _guard_duration(reason: str) -> float:
    # The engine logs an episode when it ends: "... for D s: ..." (session/engine.py).
    try:
        return float(reason.split(" for ", 1)[1].split(" s", 1)[0])
    except (IndexError, ValueError):
        return 0.0


def plot_session(tel: npt.NDArray[np.float64], path: Path, *, title: str,
                 events: list[EventOut], alarms: list[AlarmOut]) -> Path:
    """Write a PNG of the session to `path` and return it."""
    d = _decimate(tel)
    t = d[:, COL["t"]]
    fig, (ax_f, ax_d, ax_a) = plt.subplots(3, 1, figsize=(12, 8), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1.3, 1]})
    ph = d[:, COL["phase"]].astype(int)
    if t.size:
        edges = np.flatnonzero(np.diff(ph)) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [len(ph) - 1]))
        for a, b in zip(starts, ends, strict=True):
            colour = _PHASE_COLOURS.get(Phase(int(ph[a])))
            if colour:
                for ax in (ax_f, ax_d, ax_a):
                    ax.axvspan(t[a], t[b], color=colour, lw=0)
    true = d[:, COL["force_true_n"]]
    meas = 0.5 * (d[:, COL["force_a_n"]] + d[:, COL["force_b_n"]])
    ax_f.plot(t, d[:, COL["target_n"]], color="#1f77b4", lw=1.2, label="target")
    ax_f.plot(t, meas, color="#d62728", lw=0.6, alpha=0.8, label="measured (mean of load cells)")
    if not np.all(np.isnan(true)):
        ax_f.plot(t, true, color="#2ca02c", lw=0.6, alpha=0.7, label="true force (simulator)")
    ax_f.set_ylabel("force (N)")
    sec = ax_f.secondary_yaxis("right", functions=(n_to_lb, lb_to_n))
    sec.set_ylabel("force (lb)")
    ax_f.legend(loc="upper right", fontsize=8)
    ax_f.set_title(title)
    for ev in events:
        if ev.kind in ("edit", "fault", "command", "slack", "confirm-needed"):
            ax_f.axvline(ev.t, color="#555", lw=0.7, ls="--")
            ax_f.annotate(ev.kind if ev.field is None else f"{ev.field}={ev.new:g}", (ev.t, 0),
                          xytext=(2, 2), textcoords="offset points", fontsize=7, rotation=90)
    for i, ev in enumerate(e for e in events if e.kind == "guarding"):
        # A guarding episode the controller backed off from: shaded, with its size.
        start = ev.t - _guard_duration(ev.reason)
        ax_f.axvspan(start, ev.t, color="#ff7f0e", alpha=0.25, lw=0,
                     label="muscle guarding (backed off)" if i == 0 else None)
        ax_f.annotate(f"guard +{ev.new or 0:.0f} N", (start, 0), xytext=(2, 12),
                      textcoords="offset points", fontsize=7, rotation=90, color="#b35900")
    if any(e.kind == "guarding" for e in events):
        ax_f.legend(loc="upper right", fontsize=8)
    for al in alarms:
        ax_f.axvline(al.t, color="#c00", lw=1.2)
        ax_f.annotate(f"ALARM {al.kind}", (al.t, ax_f.get_ylim()[1] * 0.9), fontsize=8,
                      color="#c00", rotation=90, va="top")
    dist = d[:, COL["distraction_mm"]]
    if not np.all(np.isnan(dist)):
        ax_d.plot(t, dist, color="#9467bd", lw=1.0, label="distraction")
        ax_d.set_ylabel("distraction (mm)")
        g = d[:, COL["guarding"]]
        ax_g = ax_d.twinx()
        ax_g.plot(t, g, color="#ff7f0e", lw=0.8, alpha=0.7)
        ax_g.set_ylabel("guarding", color="#ff7f0e")
        ax_g.set_ylim(0, 1)
    else:
        ax_d.plot(t, d[:, COL["position_mm"]], color="#9467bd", lw=1.0)
        ax_d.set_ylabel("cable (mm)")
    ax_a.plot(t, d[:, COL["angle_target_deg"]], color="#1f77b4", lw=1.0, label="target")
    ax_a.plot(t, d[:, COL["angle_deg"]], color="#d62728", lw=0.8, label="measured")
    ax_a.set_ylabel("angle (deg)")
    ax_a.set_xlabel("time (s)")
    ax_a.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

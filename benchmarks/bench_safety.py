"""Safety latency at 1 kHz: fault onset -> detection -> first release command, for every fault
kind, and the release duration from the maximum lumbar force."""

from __future__ import annotations

import numpy as np

from spinedecomp.control.protocol import parse_protocol
from spinedecomp.session.faults import FAULT_KINDS, parse_fault
from spinedecomp.session.model import Command
from spinedecomp.session.run import SessionSpec, build_engine
from spinedecomp.session.telemetry import COL

DT = 0.001
PROTO = parse_protocol({"name": "bench", "region": "lumbar", "mode": "intermittent",
                        "max_force": {"value": 45, "unit": "%bw"}, "hold_s": 30, "rest_s": 15,
                        "ramp_s": 10, "duration_min": 3, "angle_deg": 15})
ARGS = {"loadcell-freeze": ":a", "loadcell-nan": ":b", "loadcell-drift": ":a:40",
        "loadcell-offset": ":b:60", "loadcell-spike": ":a:1200", "overforce-spike": ":25"}


def _run(spec_faults: list[str], proto: object = PROTO, weight: float = 80.0,
         edits: list[tuple[float, Command]] | None = None) -> object:
    spec = SessionSpec(protocol=proto, body_weight_kg=weight,  # type: ignore[arg-type]
                       faults=[parse_fault(f) for f in spec_faults], edits=edits or [])
    eng = build_engine(spec)
    eng.setup(confirm_high_force=True)
    return eng, eng.run()


def main() -> None:
    """Print the latency table and the release duration."""
    print(f"{'fault':22s} {'alarm':18s} {'onset->detect':>16s} {'detect->release cmd':>20s} "
          f"{'force safe after':>17s}")
    for kind in sorted(FAULT_KINDS):
        spec = f"30:{kind}{ARGS.get(kind, '')}"
        edits = [(31.0, Command(kind="edit", field="angle_deg", value=25.0))] if kind == "angle-stuck" else []
        _, res = _run([spec], edits=edits)  # type: ignore[misc]
        a = res.alarms[0]
        detect = a.t - 30.0
        rel = (res.release_cmd_t or a.t) - a.t
        tel = res.telemetry
        i = round(a.t / DT)
        safe = np.argmax(tel[i:, COL["force_true_n"]] <= res.safe_n) * DT
        print(f"{spec:22s} {a.kind:18s} {detect / DT:6.0f} periods {detect * 1000:6.1f} ms "
              f"{rel / DT:4.0f} periods {rel * 1000:5.1f} ms {safe:13.2f} s")
    # Release from the maximum lumbar force: 200 lb on a heavy patient.
    p = parse_protocol({"name": "max", "region": "lumbar", "mode": "static",
                        "max_force": {"value": 200, "unit": "lb"}, "ramp_s": 30, "duration_min": 2,
                        "angle_deg": 10, "cap": {"value": 200, "unit": "lb"}})
    _, res = _run(["60:patient-switch"], proto=p, weight=200.0)  # type: ignore[misc]
    tel = res.telemetry
    i = round(res.alarms[0].t / DT)
    f0 = tel[i, COL["force_true_n"]]
    safe = np.argmax(tel[i:, COL["force_true_n"]] <= res.safe_n) * DT
    zero = np.argmax(tel[i:, COL["force_true_n"]] <= 1.0) * DT
    print(f"\nRelease from the maximum lumbar force ({f0:.0f} N, patient switch): "
          f"below {res.safe_n:.0f} N after {safe:.2f} s, below 1 N after {zero:.2f} s; "
          f"motor disabled {'yes' if res.motor_off else 'NO'}")

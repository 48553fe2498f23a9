"""Randomized fault campaign (issue: safety monitor integrity).

Sessions on plants drawn from the family (every built-in protocol, 40-180 kg, 100 / 250 /
1000 Hz), shortened by an operator stop at 45-90 s, with 1-3 faults of every kind at random
times: one in five with two faults in the same period, one in four faults after the stop (in
the release), one in five sessions paused for 5 s. Seeds from 3,000,000 (never used while
building the monitor). Prints the invariants and, per first-fault kind, time-to-detect and
time-to-safe (p50 / p99 / max) against the documented bound.

Environment: BENCH_FAULTS_N (default 20000 sessions).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from multiprocessing import Pool

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from spinedecomp.session.fault_campaign import FaultResult, draw_fault_case, run_fault_case

FIRST_SEED = 3_000_000


def _run(seed: int) -> FaultResult:
    # Every session alarms on purpose: keep the workers' logs out of the table.
    logging.getLogger("spinedecomp").setLevel(logging.CRITICAL)
    return run_fault_case(draw_fault_case(seed))


def _q(xs: list[float]) -> str:
    if not xs:
        return f"{'-':>23s}"
    a = np.asarray(xs)
    return f"{np.percentile(a, 50):7.3f}{np.percentile(a, 99):8.3f}{a.max():8.3f}"


def main() -> None:
    """Run the campaign and print its tables."""
    n = int(os.environ.get("BENCH_FAULTS_N", "20000"))
    seeds = list(range(FIRST_SEED, FIRST_SEED + n))
    out: list[FaultResult] = []
    t0 = time.perf_counter()
    cols = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn())
    with Pool(os.cpu_count() or 1) as pool, Progress(*cols) as bar:
        task = bar.add_task("fault campaign", total=n)
        for r in pool.imap_unordered(_run, seeds, chunksize=16):
            out.append(r)
            bar.advance(task)
    wall = time.perf_counter() - t0
    unsafe = [r for r in out if not r.safe_end]
    over = [r for r in out if not r.within_force_bound]
    late = [r for r in out if not r.within_time_bound]
    missing = [r for r in out if r.missing_alarm]
    two = sum(len({f.split(':')[0] for f in r.case.faults}) < len(r.case.faults) for r in out)
    rel = sum(any(float(f.split(':')[0]) >= r.case.stop_at_s for f in r.case.faults) for r in out)
    print(f"\n{n} fault sessions, seeds {FIRST_SEED}-{FIRST_SEED + n - 1}, {wall:.0f} s wall on "
          f"{os.cpu_count()} cores; {sum(len(r.case.faults) for r in out)} faults, {two} sessions "
          f"with two in one period, {rel} with faults during the release, "
          f"{sum(r.case.pause_at_s is not None for r in out)} paused")
    print(f"{'':46s}{'value':>8s}{'target':>8s}")
    print(f"{'ended above the safe level or motor enabled':46s}{len(unsafe):8d}{0:8d}")
    print(f"{'true force above limit + 5 % (+ spasm)':46s}{len(over):8d}{0:8d}")
    print(f"{'hazard fault without an alarm':46s}{len(missing):8d}{0:8d}")
    print(f"{'force safe later than the documented bound':46s}{len(late):8d}{0:8d}")
    for r in (unsafe + over + missing + late)[:20]:
        print(f"  {r.case.command_line()}")
    detect: dict[str, list[float]] = defaultdict(list)
    safe: dict[str, list[float]] = defaultdict(list)
    margin: dict[str, list[float]] = defaultdict(list)
    for r in out:
        if r.detect_s is not None:
            detect[r.first_fault_kind].append(r.detect_s)
        if r.safe_after_s is not None and r.bound_s is not None:
            safe[r.first_fault_kind].append(r.safe_after_s)
            margin[r.first_fault_kind].append(r.bound_s - r.safe_after_s)
    print(f"\n{'first fault':22s}{'n':>6s}{'detected':>9s}  {'time-to-detect s p50/p99/max':>23s}"
          f"  {'time-to-safe s p50/p99/max':>23s}  {'min slack to bound s':>9s}")
    by_kind: dict[str, list[FaultResult]] = defaultdict(list)
    for r in out:
        by_kind[r.first_fault_kind].append(r)
    for kind in sorted(by_kind):
        rs = by_kind[kind]
        det = sum(r.detect_s is not None for r in rs)
        print(f"{kind:22s}{len(rs):6d}{100.0 * det / len(rs):8.0f}%  {_q(detect[kind])}  "
              f"{_q(safe[kind])}  {min(margin[kind], default=float('nan')):9.3f}")
    print("(a fault that is no hazard in the moment, e.g. a stuck angle actuator with no angle "
          "change, or a drift that stays within the disagreement band, raises no alarm by "
          "design; 'detected' counts any alarm after the first fault)")


if __name__ == "__main__":
    main()

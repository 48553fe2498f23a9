"""`make bench`: run every benchmark module in turn and print its results.

Each module exposes `main()`. Timings are measured here, never asserted in `make test`.
Pass module names (e.g. `python -m benchmarks control safety`) to run a subset.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
import traceback

MODULES = ("bench_control", "bench_robust", "bench_safety", "bench_faults", "bench_store",
           "bench_modbus", "bench_web")


def main() -> int:
    """Run the benchmarks; returns non-zero if any failed to run."""
    # Alarms raised on purpose by the benchmarks would otherwise flood the output.
    logging.basicConfig(level=logging.ERROR)
    wanted = [f"bench_{a.removeprefix('bench_')}" for a in sys.argv[1:]] or list(MODULES)
    failed = 0
    for name in wanted:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"(skipped: {exc})")
            continue
        try:
            mod.main()
        except Exception:
            failed += 1
            traceback.print_exc()
        print(f"--- {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

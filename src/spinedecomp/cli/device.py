"""`spinedecomp device ...`: the served simulator and a probe for real tables.

- `device serve` runs the physics simulator behind a real Modbus TCP server with the register
  map of docs/device-protocol.md, so the whole stack can run over a socket
  (`session simulate --device modbus://127.0.0.1:PORT`) and a table maker can compare their
  firmware with the reference. It binds to loopback unless told otherwise.
- `device probe modbus://HOST:PORT` connects to a table, checks the map, and prints its
  identity and one frame of readings.
- `device reference` serves the reference table side (`spinedecomp.device.reference_table`,
  pymodbus only: a table maker's starting point).
- `device conformance modbus://HOST:PORT` runs the conformance suite against any table and
  prints pass/fail per rule; exit 1 if any rule failed.
"""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

import typer

from spinedecomp.cli.common import err, fail, out, print_json
from spinedecomp.core.errors import DeviceError
from spinedecomp.core.units import Region

device_app = typer.Typer(help="Tables: the served simulator, probing a real table.",
                         no_args_is_help=True)

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@device_app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind. Loopback by default: the simulator has no "
                                  "authentication, like Modbus itself."),
    port: int = typer.Option(5020, "--port", help="TCP port (0 = any free port)."),
    region: Region = typer.Option(Region.LUMBAR, "--region", help="Patient model region."),
    weight_kg: float = typer.Option(80.0, "--weight-kg", help="Patient body weight."),
    rate_hz: float = typer.Option(1000.0, "--rate-hz", help="Physics rate of the table."),
    angle_deg: float = typer.Option(0.0, "--angle-deg", help="Initial angle of pull."),
    seed: int = typer.Option(0, "--seed", help="Seed of the load-cell noise."),
) -> None:
    """Serve the simulated table over Modbus TCP until interrupted (Ctrl-C or SIGTERM)."""
    from spinedecomp.device.served import ServedSimulator
    from spinedecomp.device.simulated import PatientModel

    if not 0 <= port <= 65535:
        fail(f"--port must be within 0-65535, got {port}")
    if not 25.0 <= weight_kg <= 300.0:
        fail(f"--weight-kg must be within 25-300, got {weight_kg:g}")
    if not 100.0 <= rate_hz <= 10000.0:
        fail(f"--rate-hz must be within 100-10000, got {rate_hz:g}")
    if host not in _LOOPBACK:
        err.print(f"[bold yellow]warning:[/] binding {host}: the simulated table is reachable "
                  "from the network, without authentication")
    sim = ServedSimulator(PatientModel(region=region, body_weight_kg=weight_kg, seed=seed),
                          host=host, port=port, rate_hz=rate_hz, angle_deg=angle_deg)
    try:
        sim.start()
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")
    # This process only serves the table: hand the GIL between the physics thread and the
    # server thread every 0.5 ms instead of 5 ms, so a request never waits out a physics step.
    sys.setswitchinterval(0.0005)
    err.print(f"simulated {region.value} table ({weight_kg:g} kg patient, physics at "
              f"{rate_hz:g} Hz) on [bold]{sim.url}[/]; Ctrl-C to stop")
    _serve_until_signal(sim.url, sim.stop)


@device_app.command("probe")
def probe(
    device: str = typer.Argument(..., help="modbus://HOST:PORT"),
    timeout_s: float = typer.Option(1.0, "--timeout-s", help="Connect timeout per attempt."),
    retries: int = typer.Option(1, "--retries", help="Extra connect attempts."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Connect to a table, check its register map, print identity and one frame."""
    from spinedecomp.device.factory import link_policy, parse_modbus_url
    from spinedecomp.device.modbus import ModbusTable

    try:
        url = parse_modbus_url(device)
        table = ModbusTable.connect(url.host, url.port, timeout_s=timeout_s, retries=retries,
                                    policy=link_policy(url))
    except DeviceError as exc:
        fail(str(exc))
    try:
        frame = table.read()
        ident = table.identity
    finally:
        table.close()

    def clean(d: dict[str, object]) -> dict[str, object]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    if as_json:
        print_json({"identity": clean(dataclasses.asdict(ident)),
                    "frame": clean(dataclasses.asdict(frame))})
        return
    out.print(f"[bold]{ident.name}[/] firmware {ident.firmware}, serial {ident.serial}, "
              f"map v{ident.map_version}{' (simulator)' if table.info.simulated else ''}")
    out.print(f"  regions {', '.join(r.value for r in table.info.regions)}; force limit "
              f"{ident.force_limit_n:.0f} N; angle {ident.angle_min_deg:g}-{ident.angle_max_deg:g}"
              f" deg; travel {ident.travel_max_mm:g} mm; sampling {ident.sample_rate_hz} Hz")
    out.print(f"  load cells {frame.force_a_n:.2f} / {frame.force_b_n:.2f} N, position "
              f"{frame.position_mm:.2f} mm, angle {frame.angle_deg:.2f} deg, switch "
              f"A={frame.switch_a:g} B={frame.switch_b:g}, drive "
              f"{'enabled' if frame.motor_enabled else 'disabled'}, link "
              f"{'ok' if frame.comm_ok else 'NOT ok'}")


def _serve_until_signal(url: str, stop_all: Callable[[], None]) -> None:
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    old_int = signal.signal(signal.SIGINT, _on_signal)
    old_term = signal.signal(signal.SIGTERM, _on_signal)
    # One plain line on stdout that scripts and tests can wait for.
    sys.stdout.write(f"serving {url}\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        stop_all()
        err.print("stopped")


@device_app.command("reference")
def reference(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(5021, "--port", help="TCP port (0 = any free port)."),
    angle_deg: float = typer.Option(15.0, "--angle-deg", help="Initial angle of pull."),
    no_watchdog: bool = typer.Option(False, "--no-watchdog",
                                     help="A deliberately broken table (no heartbeat watchdog), "
                                          "to see the conformance suite fail. Never for use."),
) -> None:
    """Serve the reference table side (pymodbus only, a trivial mechanical model) until
    interrupted: the starting point for a table maker's firmware."""
    from spinedecomp.device.reference_table import ReferenceServer, ReferenceTable

    if not 0 <= port <= 65535:
        fail(f"--port must be within 0-65535, got {port}")
    if host not in _LOOPBACK:
        err.print(f"[bold yellow]warning:[/] binding {host}: the reference table is reachable "
                  "from the network, without authentication")
    srv = ReferenceServer(ReferenceTable(angle_deg=angle_deg, watchdog=not no_watchdog),
                          host=host, port=port)
    try:
        srv.start()
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")
    err.print(f"reference table on [bold]{srv.url}[/]"
              f"{' [bold red](watchdog DISABLED: broken on purpose)[/]' if no_watchdog else ''}"
              "; Ctrl-C to stop")
    _serve_until_signal(srv.url, srv.stop)


@device_app.command("conformance")
def conformance(
    device: str = typer.Argument(..., help="modbus://HOST:PORT"),
    rule: list[str] = typer.Option([], "--rule", help="Run only this rule (repeatable)."),
    timeout_s: float = typer.Option(1.0, "--timeout-s", help="Timeout of each transaction."),
    watchdog_ms: int = typer.Option(100, "--watchdog-ms",
                                    help="WATCHDOG_MS the rules run with (20-2000); longer on a "
                                         "loaded host."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per rule)."),
) -> None:
    """Check a table against every table-side rule of docs/device-protocol.md; pass/fail per
    rule, exit 1 if any failed. It moves the cable and the angle: no patient on the table,
    a test load on the harness."""
    from spinedecomp.device.conformance import RuleResult, run_conformance
    from spinedecomp.device.factory import parse_modbus_url

    if not 0.005 <= timeout_s <= 10.0:
        fail(f"--timeout-s must be within 0.005-10, got {timeout_s:g}")
    try:
        url = parse_modbus_url(device)
    except DeviceError as exc:
        fail(str(exc))

    def show(res: RuleResult) -> None:
        if not as_json:
            mark = "[green]PASS[/]" if res.passed else "[bold red]FAIL[/]"
            out.print(f"{mark} {res.rule:<26} (section {res.section}) {res.detail}",
                      highlight=False, soft_wrap=True)

    try:
        results = run_conformance(url.host, url.port, timeout_s=timeout_s, only=tuple(rule),
                                  watchdog_ms=watchdog_ms, report=show)
    except ValueError as exc:
        fail(str(exc))
    failed = [r for r in results if not r.passed]
    if as_json:
        print_json({"device": url.address, "passed": not failed,
                    "rules": [dataclasses.asdict(r) for r in results]})
    else:
        out.print(f"{len(results) - len(failed)}/{len(results)} rules passed"
                  + (f"; FAILED: {', '.join(r.rule for r in failed)}" if failed else ""))
    if failed:
        raise SystemExit(1)


def register(app: typer.Typer) -> None:
    """Add the `device` sub-app to the main app."""
    app.add_typer(device_app, name="device")

"""ModbusTable against the served simulator over real loopback sockets: connecting, the
register map's rules on the table side, the heartbeat watchdog, link faults and the reconnect
policy. No mocks: every test talks TCP to a pymodbus server on 127.0.0.1."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import replace

import pytest

from spinedecomp.core.errors import DeviceError
from spinedecomp.device import modbus_registers as mr
from spinedecomp.device import physics as ph
from spinedecomp.device.factory import open_table
from spinedecomp.device.modbus import LinkPolicy, ModbusTable
from spinedecomp.device.modbus_adapter import DeviceRefused, ModbusClient, RegisterServer
from spinedecomp.device.served import ServedSimulator, ServedTable
from spinedecomp.device.table import ActuatorCommand, Table

from .helpers import MODEL, SERVED_ANGLE_DEG, LinkProxy, wait_until

FAST = LinkPolicy(io_timeout_s=0.05, reconnect_attempts=3, backoff_s=0.02, backoff_max_s=0.1)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pull(table: ModbusTable, seconds: float, v: float = 40.0,
         angle: float = SERVED_ANGLE_DEG) -> None:
    """Drive the table like a controller would at 100 Hz for `seconds`."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        table.read()
        table.write(ActuatorCommand(v, angle, True, 0))
        table.advance(0.01)
        table.read()
        wait_until(lambda: False, 0.01)


# ---- connecting ----------------------------------------------------------------------------
def test_connect_reads_identity_and_implements_the_table_protocol(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port)
    try:
        assert isinstance(table, Table)
        info = table.info
        assert info.simulated and info.firmware.startswith("served-sim")
        assert info.force_limit_n == pytest.approx(980.67, abs=0.01)
        assert info.angle_max_deg == pytest.approx(35.0)
        # The served simulator declares its drive over the wire as the in-process one does.
        declared = served.table.sim.info.dynamics
        assert declared is not None and info.dynamics is not None
        assert info.dynamics.motor_lag_s == pytest.approx(declared.motor_lag_s, abs=1e-4)
        assert info.dynamics.transport_delay_s == pytest.approx(declared.transport_delay_s,
                                                                abs=1e-4)
        assert info.dynamics.stiffness_max_n_per_mm == pytest.approx(
            declared.stiffness_max_n_per_mm, abs=0.01)
        fr = table.read()
        assert fr.comm_ok and not fr.motor_enabled
        assert fr.angle_deg == pytest.approx(SERVED_ANGLE_DEG)
        assert (fr.switch_a, fr.switch_b) == (1.0, 0.0)
        assert math.isfinite(fr.force_true_n)  # the simulator reports its truth
        assert table.test_patient_switch()
    finally:
        table.close()


def test_unreachable_table_is_a_clear_error_never_the_simulator() -> None:
    port = closed_port()
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match=rf"cannot reach the table at modbus://127.0.0.1:{port} "
                                          r"after 3 attempt\(s\).*--device sim"):
        ModbusTable.connect("127.0.0.1", port, timeout_s=0.2, retries=2)
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(DeviceError, match="cannot reach the table"):
        open_table(f"modbus://127.0.0.1:{port}", MODEL)


class _Foreign:
    """A Modbus device that is not a spinedecomp table (answers zeros everywhere)."""

    def read_input(self, address: int, count: int) -> list[int] | int:
        return [0] * count

    def read_holding(self, address: int, count: int) -> list[int] | int:
        return [0] * count

    def write_holding(self, address: int, values: Sequence[int]) -> int | None:
        return None


def test_a_device_that_does_not_speak_the_map_is_refused() -> None:
    srv = RegisterServer(_Foreign())
    port = srv.start()
    try:
        with pytest.raises(DeviceError, match="not a spinedecomp table"):
            ModbusTable.connect("127.0.0.1", port, timeout_s=0.5, retries=0)
    finally:
        srv.stop()


def test_table_refuses_what_it_cannot_do(served: ServedSimulator) -> None:
    c = ModbusClient("127.0.0.1", served.port, timeout_s=1.0)
    c.open()
    try:
        ctrl = mr.COMMAND.field("CONTROL").address
        for bad in (int(mr.Control.FAULT_RESET | mr.Control.ENABLE), 0x0100):
            with pytest.raises(DeviceRefused) as exc:
                c.write_holding(ctrl, [bad])
            assert exc.value.code == mr.EXC_ILLEGAL_VALUE
        with pytest.raises(DeviceRefused) as exc:
            c.write_holding(mr.COMMAND.field("MODE").address, [int(mr.Mode.FORCE)])
        assert exc.value.code == mr.EXC_ILLEGAL_VALUE
        with pytest.raises(DeviceRefused) as exc:
            c.read_input(mr.READINGS.count, 1)
        assert exc.value.code == mr.EXC_ILLEGAL_ADDRESS
        r = mr.decode_readings(c.read_input(0, mr.READINGS.count))
        assert r.faults & mr.Fault.BAD_COMMAND
        c.write_holding(ctrl, [0])  # a valid write clears BAD_COMMAND
        r = mr.decode_readings(c.read_input(0, mr.READINGS.count))
        assert not r.faults & mr.Fault.BAD_COMMAND
        assert c.read_holding(0, 9)[ctrl] == 0
    finally:
        c.close()


def test_patient_switch_test_fails_when_unplugged(served: ServedSimulator) -> None:
    served.table.set_fault(ph.FLT_SWITCH_UNPLUGGED, 1.0)
    table = ModbusTable.connect("127.0.0.1", served.port)
    try:
        assert not table.test_patient_switch()
    finally:
        table.close()


# ---- the table's own safety ------------------------------------------------------------------
def test_table_releases_on_its_own_when_the_heartbeat_stops(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=LinkPolicy(watchdog_ms=100))
    try:
        pull(table, 1.2)
        st = served.table.status()
        assert st.enabled and st.position_mm > 30.0 and st.force_true_n > 20.0
        # The controller stops: no more writes, no more heartbeats.
        t_last = time.monotonic()
        assert wait_until(lambda: served.table.status().faults & mr.Fault.HEARTBEAT_LOST, 2.0)
        waited = time.monotonic() - t_last
        assert 0.09 <= waited < 0.5
        st = served.table.status()
        assert not st.enabled and st.motor_state == mr.MotorState.RELEASED
        # The released reel pays out: tension falls to zero without any command.
        assert wait_until(lambda: served.table.status().force_true_n < 1.0, 3.0)
        fr = table.read()
        assert not fr.comm_ok and not fr.motor_enabled  # the driver reports the lost link
        # Latched: a later ENABLE does not re-enable the drive (no silent resume).
        pull(table, 0.2)
        assert not served.table.status().enabled
    finally:
        table.close()
    # Only a new session (connect = fault reset with the drive off) clears it.
    table = ModbusTable.connect("127.0.0.1", served.port)
    try:
        assert table.read().comm_ok
        assert served.table.status().motor_state == mr.MotorState.DISABLED
    finally:
        table.close()


def test_release_order_is_latched_on_the_table(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port)
    try:
        pull(table, 0.5)
        table.release()
        assert wait_until(lambda: served.table.status().faults & mr.Fault.RELEASED, 1.0)
        pull(table, 0.2)  # keeps ordering the release; ENABLE is never sent again
        assert not served.table.status().enabled
    finally:
        table.close()


# ---- link faults -----------------------------------------------------------------------------
def test_read_errors_report_comm_lost_without_reconnecting(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=FAST)
    try:
        assert table.read().comm_ok
        served.table.fail_reads = True
        frames = [table.read() for _ in range(5)]
        assert not any(f.comm_ok for f in frames)
        assert table.stats.refused == 5 and table.stats.reconnect_attempts == 0
        assert not table.link_lost
        served.table.fail_reads = False
        assert table.read().comm_ok  # the link itself never failed
    finally:
        table.close()


@pytest.mark.parametrize("mode", ["corrupt-function", "corrupt-protocol", "corrupt-count", "delay",
                                  "drop"])
def test_bad_replies_become_comm_lost_and_latch(served: ServedSimulator, mode: str) -> None:
    with LinkProxy(served.port) as proxy:
        table = ModbusTable.connect("127.0.0.1", proxy.port, policy=FAST)
        try:
            before = table.read()
            assert before.comm_ok
            proxy.mode = mode
            t0 = time.monotonic()
            fr = table.read()
            # Each bad transaction costs at most the I/O timeout, never more.
            assert time.monotonic() - t0 < FAST.io_timeout_s + 0.1
            assert not fr.comm_ok
            assert fr.force_a_n == before.force_a_n  # the last values, marked not ok
            assert table.stats.failures == 1 and table.link_lost
            proxy.mode = "pass"
            # The reconnect succeeds, values are live again, but comm_ok stays False: a
            # session that lost its link never resumes treatment.
            assert wait_until(lambda: table.read().force_a_n != before.force_a_n, 2.0)
            assert table.stats.reconnects == 1
            assert not table.read().comm_ok
        finally:
            table.close()


def test_reconnect_policy_is_bounded_with_backoff(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=FAST)
    try:
        assert table.read().comm_ok
        served.stop_server()
        t0 = time.monotonic()
        assert not table.read().comm_ok
        assert wait_until(lambda: (table.read(), table.stats.gave_up)[1], 3.0)
        took = time.monotonic() - t0
        # 3 attempts after waits of 20, 40, 80 ms (doubling, capped at 100 ms) and a last
        # 100 ms before giving up.
        assert table.stats.reconnect_attempts == FAST.reconnect_attempts
        assert 0.2 <= took < 2.0
        # Given up: reads return at once, and nothing is attempted any more.
        served.start_server()
        t1 = time.monotonic()
        assert not table.read().comm_ok
        assert time.monotonic() - t1 < 0.01
        assert table.stats.reconnect_attempts == FAST.reconnect_attempts
    finally:
        table.close()


def test_reconnect_after_a_cut_cable_keeps_the_table_released(served: ServedSimulator) -> None:
    # A 400 ms watchdog: a loaded test machine that stalls this process for 100 ms while it
    # pulls must not release the table before the cable is cut.
    table = ModbusTable.connect("127.0.0.1", served.port, policy=replace(FAST, watchdog_ms=400))
    try:
        pull(table, 0.8)
        assert served.table.status().enabled
        served.stop_server()  # the cable is cut; the table keeps running
        assert wait_until(lambda: served.table.status().faults & mr.Fault.HEARTBEAT_LOST, 2.0)
        served.start_server()
        assert wait_until(lambda: (table.read(), table.stats.reconnects)[1] >= 1, 3.0)
        pull(table, 0.3)  # the controller keeps commanding ENABLE ...
        st = served.table.status()
        assert not st.enabled and st.motor_state == mr.MotorState.RELEASED  # ... in vain
        assert not table.read().comm_ok
    finally:
        table.close()


def test_a_table_that_stops_sampling_is_not_trusted(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=FAST)
    try:
        assert table.read().comm_ok
        served.table.stop()  # firmware hang: the Modbus stack answers, SAMPLE stops
        assert wait_until(lambda: not table.read().comm_ok, FAST.stale_s + 0.5)
        assert not table.link_lost  # the link is fine; the table is not
    finally:
        table.close()


# ---- the table's own release, ordered by the driver (sections 4.2, 5.4) ----------------------
SLOW_WATCHDOG = replace(FAST, watchdog_ms=2000)  # the watchdog stays out of these tests' way


def held_control(port: int) -> int:
    """CONTROL as the table last accepted it, read by a second client."""
    c = ModbusClient("127.0.0.1", port, timeout_s=1.0)
    c.open()
    try:
        return c.read_holding(mr.COMMAND.field("CONTROL").address, 1)[0]
    finally:
        c.close()


def test_release_is_latched_in_every_following_write(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    try:
        pull(table, 0.3)
        table.release()
        assert table.release_ordered and table.release_delivered
        st = served.table.status()
        assert st.faults & mr.Fault.RELEASED and st.motor_state == mr.MotorState.RELEASED
        pull(table, 0.2)  # the engine keeps asking for ENABLE ...
        assert held_control(served.port) == mr.Control.RELEASE  # ... the driver sends RELEASE
        assert not served.table.status().enabled
    finally:
        table.close()
    assert held_control(served.port) == mr.Control.RELEASE


def test_a_session_that_kept_its_link_closes_without_a_release(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    pull(table, 0.3)
    table.close()
    # The table applies the write at its next sample.
    assert wait_until(lambda: served.table.status().motor_state == mr.MotorState.DISABLED, 1.0)
    assert not served.table.status().faults & mr.FAULTS_LATCHED


def test_release_ordered_while_the_link_is_down_goes_out_on_reconnect(
        served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    try:
        pull(table, 0.3)
        served.stop_server()  # the cable is cut
        assert not table.read().comm_ok and table.link_lost
        table.release()  # cannot be delivered now
        assert table.release_ordered and not table.release_delivered
        assert not served.table.status().faults & mr.Fault.RELEASED
        served.start_server()
        assert wait_until(lambda: (table.read(), table.stats.reconnects)[1] >= 1, 3.0)
        assert table.release_delivered
        st = served.table.status()
        assert st.faults & mr.Fault.RELEASED and st.motor_state == mr.MotorState.RELEASED
    finally:
        table.close()


def test_release_is_tried_even_after_the_driver_gave_up(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    try:
        pull(table, 0.3)
        served.stop_server()
        assert wait_until(lambda: (table.read(), table.stats.gave_up)[1], 3.0)
        served.start_server()
        table.release()
        assert table.release_delivered
        assert served.table.status().faults & mr.Fault.RELEASED
    finally:
        table.close()


def test_close_after_a_lost_link_orders_the_tables_release(served: ServedSimulator) -> None:
    # An outage shorter than the watchdog: the table did not release on its own, and a table
    # whose disabled drive holds the cable would keep the force without the order.
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    try:
        pull(table, 0.3)
        served.stop_server()
        assert not table.read().comm_ok
        served.start_server()
        assert wait_until(lambda: (table.read(), table.stats.reconnects)[1] >= 1, 3.0)
        assert not served.table.status().faults & mr.FAULTS_LATCHED
    finally:
        table.close()
    st = served.table.status()
    assert st.faults & mr.Fault.RELEASED and st.motor_state == mr.MotorState.RELEASED


def test_close_delivers_a_pending_release_when_the_link_returns(served: ServedSimulator) -> None:
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    pull(table, 0.3)
    served.stop_server()
    assert not table.read().comm_ok
    table.release()
    assert not table.release_delivered
    served.start_server()
    table.close()  # no read in between: close itself reconnects to deliver
    assert table.release_delivered
    assert served.table.status().faults & mr.Fault.RELEASED


# ---- the set-up switch test and the prompt capability ------------------------------------------
class _Recording:
    """A served table that notes every CONTROL value written to it."""

    def __init__(self, table: ServedTable) -> None:
        self.table = table
        self.controls: list[int] = []

    def read_input(self, address: int, count: int) -> list[int] | int:
        return self.table.read_input(address, count)

    def read_holding(self, address: int, count: int) -> list[int] | int:
        return self.table.read_holding(address, count)

    def write_holding(self, address: int, values: Sequence[int]) -> int | None:
        ctrl = mr.COMMAND.field("CONTROL").address
        if address <= ctrl < address + len(values):
            self.controls.append(int(values[ctrl - address]))
        return self.table.write_holding(address, values)


@pytest.mark.parametrize("advertised", [True, False])
def test_switch_prompt_is_sent_only_to_a_table_that_advertises_it(advertised: bool) -> None:
    table = ServedTable(MODEL, angle_deg=SERVED_ANGLE_DEG, switch_prompt=advertised)
    bank = _Recording(table)
    table.start()
    srv = RegisterServer(bank)
    port = srv.start()
    try:
        drv = ModbusTable.connect("127.0.0.1", port,
                                  policy=replace(FAST, switch_test_timeout_s=5.0))
        if not advertised:
            # Nobody prompts: the operator asks, the patient presses (here: the test).
            def press() -> None:
                wait_until(lambda: False, 0.3)
                table.set_fault(ph.FLT_SWITCH_PRESSED, 1.0)
                wait_until(lambda: False, 0.3)
                table.set_fault(ph.FLT_SWITCH_PRESSED, 0.0)

            threading.Thread(target=press, daemon=True).start()
        try:
            assert drv.test_patient_switch()
        finally:
            drv.close()
        prompted = any(c & mr.Control.SWITCH_PROMPT for c in bank.controls)
        assert prompted == advertised
        assert bool(drv.identity.capabilities & mr.Capability.SWITCH_PROMPT) == advertised
    finally:
        srv.stop()
        table.stop()


def test_a_table_without_the_capability_ignores_the_prompt_bit() -> None:
    with ServedSimulator(MODEL, angle_deg=SERVED_ANGLE_DEG, switch_prompt=False) as sim:
        c = ModbusClient("127.0.0.1", sim.port, timeout_s=1.0)
        c.open()
        try:
            c.write_holding(mr.COMMAND.field("CONTROL").address, [int(mr.Control.SWITCH_PROMPT)])
            assert not wait_until(lambda: mr.decode_readings(
                c.read_input(0, mr.READINGS.count)).switch_b == 1, 0.6)
        finally:
            c.close()


# ---- angle of pull ---------------------------------------------------------------------------
def test_angle_set_points_beyond_the_limits_are_clamped(served: ServedSimulator) -> None:
    served.table.set_param(ph.P_ANGLE_RATE, 50.0)  # the rule, not the actuator's speed
    table = ModbusTable.connect("127.0.0.1", served.port, policy=SLOW_WATCHDOG)
    try:
        seen: list[float] = []
        for target, limit in ((55.0, 35.0), (-22.0, -2.0)):
            def at_limit(target: float = target, limit: float = limit) -> bool:
                fr = table.read()
                seen.append(fr.angle_deg)
                table.write(ActuatorCommand(0.0, target, False, 0))
                return abs(fr.angle_deg - limit) < 0.01

            assert wait_until(at_limit, 5.0)
            wait_until(lambda: False, 0.3)
            assert table.read().angle_deg == pytest.approx(limit, abs=0.01)
        assert max(seen) <= 35.0 + 0.01 and min(seen) >= -2.0 - 0.01
    finally:
        table.close()

"""The only module of spinedecomp proper that imports pymodbus: a small client and a small
server in our own terms. (`reference_table` imports pymodbus too, on purpose: it is the table
maker's standalone starting point and must not depend on spinedecomp.)

Everything else (driver, served simulator, tests, benchmark) talks to these two classes, so a
change of pymodbus version (its API moved a lot between 3.6 and 3.16) is absorbed here.

Client (`ModbusClient`): synchronous, one transaction at a time, no automatic reconnect (the
driver owns the reconnect policy), and every failure mapped to one of two exceptions:
- `LinkError`: the link failed (not connected, connection refused or closed, timeout,
  malformed or mismatched reply). The socket is closed so a late reply to this request can
  never be taken for the reply to the next one.
- `DeviceRefused`: the table answered, with a Modbus exception code.

Server (`RegisterServer`): a pymodbus TCP server in a background thread whose every read and
write is answered live by a `RegisterBank` (see `modbus_registers`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusException
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from spinedecomp.device import modbus_registers as mr

log = logging.getLogger(__name__)

# pymodbus logs every failed connect and timeout at ERROR level, on every attempt. The driver
# reports the same events once, in operator terms; keep the library quiet unless someone has
# set its level on purpose.
_pm_log = logging.getLogger("pymodbus")
if _pm_log.level == logging.NOTSET:
    _pm_log.setLevel(logging.CRITICAL)


class LinkError(Exception):
    """The Modbus link failed: the request may or may not have reached the table."""


class DeviceRefused(Exception):
    """The table answered a request with a Modbus exception code."""

    def __init__(self, what: str, code: int) -> None:
        super().__init__(f"{what}: table answered with Modbus exception {code:#04x}")
        self.code = code


class ModbusClient:
    """A synchronous Modbus TCP client for one table."""

    def __init__(self, host: str, port: int, *, timeout_s: float,
                 unit_id: int = mr.UNIT_ID) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        # retries=0: a late reply is useless to a control loop; the driver decides what next.
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0)

    @property
    def is_open(self) -> bool:
        """True while a socket is connected."""
        return bool(self._client.connected)

    @property
    def timeout_s(self) -> float:
        """Connect and reply timeout, seconds."""
        return float(self._client.comm_params.timeout_connect)

    def set_timeout(self, timeout_s: float) -> None:
        """Change the connect and reply timeout."""
        self._client.comm_params.timeout_connect = timeout_s

    def open(self) -> None:
        """Connect (one attempt, bounded by the timeout); raises LinkError."""
        self._client.close()  # type: ignore[no-untyped-call]
        try:
            ok = self._client.connect()  # type: ignore[no-untyped-call]
        except (OSError, ModbusException) as exc:  # pragma: no cover - connect() catches these
            raise LinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        if not ok:
            raise LinkError(f"cannot connect to {self.host}:{self.port}: connection refused or "
                            f"no answer within {self.timeout_s * 1000:.0f} ms")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._client.close()  # type: ignore[no-untyped-call]

    def _check(self, what: str, rsp: object) -> None:
        if rsp is None:
            self.close()
            raise LinkError(f"{what}: no reply")
        is_error = getattr(rsp, "isError", None)
        if callable(is_error) and is_error():
            code = getattr(rsp, "exception_code", None)
            if isinstance(code, int) and code:
                raise DeviceRefused(what, code)
            self.close()
            raise LinkError(f"{what}: error reply {rsp!r}")

    def _run(self, what: str, call: object) -> object:
        if not self._client.connected:
            # Never let pymodbus reconnect behind the driver's back (its execute() would).
            raise LinkError(f"{what}: not connected")
        try:
            assert callable(call)
            rsp = call()
        except (ModbusException, OSError, ValueError, TypeError, IndexError) as exc:
            # Timeouts, closed sockets and undecodable replies all end up here. pymodbus may
            # or may not have closed the socket; close it so a late reply is never mistaken
            # for the reply to the next request.
            self.close()
            raise LinkError(f"{what}: {type(exc).__name__}: {exc}") from exc
        self._check(what, rsp)
        return rsp

    def _registers(self, what: str, rsp: object, count: int) -> list[int]:
        regs = getattr(rsp, "registers", None)
        if not isinstance(regs, list) or len(regs) < count:
            self.close()
            raise LinkError(f"{what}: malformed reply ({regs!r})")
        return [int(r) for r in regs[:count]]

    def read_input(self, address: int, count: int) -> list[int]:
        """Read input registers (function 4)."""
        what = f"read input {address}+{count}"
        rsp = self._run(what, lambda: self._client.read_input_registers(
            address, count=count, device_id=self.unit_id))
        return self._registers(what, rsp, count)

    def read_holding(self, address: int, count: int) -> list[int]:
        """Read holding registers (function 3)."""
        what = f"read holding {address}+{count}"
        rsp = self._run(what, lambda: self._client.read_holding_registers(
            address, count=count, device_id=self.unit_id))
        return self._registers(what, rsp, count)

    def write_holding(self, address: int, values: Sequence[int]) -> None:
        """Write holding registers (function 16, or 6 for a single register)."""
        what = f"write holding {address}+{len(values)}"
        vals = [int(v) & 0xFFFF for v in values]
        if len(vals) == 1:
            self._run(what, lambda: self._client.write_register(
                address, vals[0], device_id=self.unit_id))
        else:
            self._run(what, lambda: self._client.write_registers(
                address, vals, device_id=self.unit_id))


class RegisterServer:
    """A Modbus TCP server on its own thread, answering from a `RegisterBank`.

    Reads of input registers (function 4) and holding registers (3, 23) are answered from the
    bank at the moment of the request; writes (6, 16, 23) go to the bank, which may refuse
    them with an exception code. Addresses outside the map are answered with exception 02.
    """

    def __init__(self, bank: mr.RegisterBank, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.bank = bank
        self.host = host
        self.requested_port = port
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _device(self) -> SimDevice:
        def regs(table: mr.RegisterTable) -> list[SimData]:
            return [SimData(address=b.address, count=b.count, values=0,
                            datatype=DataType.REGISTERS)
                    for b in mr.BLOCKS if b.table is table]

        bank = self.bank

        async def action(func_code: int, start_address: int, address: int, count: int,
                         current: list[int], values: list[int] | list[bool] | None
                         ) -> ExcCodes | None:
            # pymodbus calls this before it answers; `current` is its copy of the whole
            # block, which we overwrite with the bank's live values.
            if values is not None and func_code in (6, 16, 23):
                rc = bank.write_holding(address, [int(v) for v in values])
                return ExcCodes(rc) if rc else None
            res = (bank.read_input(address, count) if func_code == 4
                   else bank.read_holding(address, count))
            if isinstance(res, int):
                return ExcCodes(res)
            off = address - start_address
            current[off:off + count] = res
            return None

        # Separate tables per function (coils and discrete inputs unused, one bit each).
        coils = [SimData(address=0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(0, simdata=(coils, list(coils), regs(mr.RegisterTable.HOLDING),
                                     regs(mr.RegisterTable.INPUT)), action=action)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = ModbusTcpServer(self._device(), address=(self.host, self.requested_port))
        try:
            await server.serve_forever(background=True)
            transport = server.transport
            sockets = getattr(transport, "sockets", None)
            self.port = int(sockets[0].getsockname()[1]) if sockets else self.requested_port
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await server.shutdown()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # pragma: no cover - reported through start()
            self._error = exc
            self._started.set()

    def start(self, timeout_s: float = 5.0) -> int:
        """Start serving; returns the bound port. Raises OSError if it cannot listen."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"modbus-server:{self.requested_port}",
                                        daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise OSError(f"Modbus server on {self.host}:{self.requested_port} did not start")
        if self._error is not None:
            self._thread.join(1.0)
            self._thread = None
            raise OSError(f"cannot listen on {self.host}:{self.requested_port}: {self._error}")
        log.info("Modbus server listening on %s:%d", self.host, self.port)
        return self.port

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving and drop every client connection."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout_s)
        self._thread = None
        self._loop = None
        self._stop = None
        log.info("Modbus server on %s:%d stopped", self.host, self.port)

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

"""Fixtures for the Modbus tests: a served simulator in this process, on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from spinedecomp.device.served import ServedSimulator

from .helpers import MODEL, SERVED_ANGLE_DEG


@pytest.fixture()
def served() -> Iterator[ServedSimulator]:
    """The served table and its Modbus server, started and stopped around the test."""
    # The served table shares the test process: hand the GIL over every 0.5 ms, not 5 ms, so
    # the server thread answers while the session loop and the physics thread run.
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        with ServedSimulator(MODEL, angle_deg=SERVED_ANGLE_DEG) as sim:
            yield sim
    finally:
        sys.setswitchinterval(old)

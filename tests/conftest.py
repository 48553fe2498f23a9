"""A skip is not a pass: under CI (`CI=true`) a test skipped because a real component it needs
is missing (chromium, PostgreSQL, the console script) is reported as a failure, naming what is
missing. Only a skip for a host capability the project cannot provide (reason starting with
`host capability:`, e.g. `chattr +i` on a filesystem that has no immutable flag) stays a skip.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

HOST_CAPABILITY = "host capability:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, None]:
    """Turn component skips into failures when CI=true."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if os.environ.get("CI", "").lower() != "true" or not report.skipped:
        return
    if hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if reason.removeprefix("Skipped: ").startswith(HOST_CAPABILITY):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which is a failure: {reason}"

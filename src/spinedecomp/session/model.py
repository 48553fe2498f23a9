"""Session data: states, events, alarms, commands, scheduled faults."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from spinedecomp.safety.alarms import Priority


class SessionState(StrEnum):
    """idle -> ready -> running <-> paused -> releasing -> completed | aborted."""

    IDLE = "idle"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    RELEASING = "releasing"
    COMPLETED = "completed"
    ABORTED = "aborted"

    @property
    def code(self) -> int:
        """Numeric code recorded in telemetry."""
        return _STATE_CODES[self]

    @property
    def terminal(self) -> bool:
        """True for completed and aborted."""
        return self in (SessionState.COMPLETED, SessionState.ABORTED)


_STATE_CODES = {s: i for i, s in enumerate(SessionState)}

TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    SessionState.IDLE: frozenset({SessionState.READY, SessionState.ABORTED}),
    SessionState.READY: frozenset({SessionState.RUNNING, SessionState.ABORTED}),
    SessionState.RUNNING: frozenset({SessionState.PAUSED, SessionState.RELEASING,
                                     SessionState.ABORTED}),
    SessionState.PAUSED: frozenset({SessionState.RUNNING, SessionState.RELEASING,
                                    SessionState.ABORTED}),
    SessionState.RELEASING: frozenset({SessionState.COMPLETED, SessionState.ABORTED}),
    SessionState.COMPLETED: frozenset(),
    SessionState.ABORTED: frozenset(),
}


@dataclass(frozen=True)
class Event:
    """Something that happened in a session, with its reason."""

    t: float
    kind: str
    reason: str
    field: str | None = None
    old: float | None = None
    new: float | None = None


@dataclass
class Alarm:
    """A latched alarm: stays until a clinician acknowledges it."""

    t: float
    kind: str
    code: int
    priority: Priority
    technical: bool
    condition: str
    value: float
    force_n: float
    action: str
    acknowledged: bool = False
    acknowledged_by: str | None = None


CommandKind = Literal["edit", "pause", "resume", "stop", "operator-stop", "confirm",
                      "acknowledge"]


@dataclass(frozen=True)
class Command:
    """A clinician's command to a running session."""

    kind: CommandKind
    field: str | None = None
    value: float | None = None
    reason: str = ""
    user: str = "clinician"


@dataclass(frozen=True)
class Fault:
    """An injected fault: at time t, of a kind, on a channel, with an argument."""

    t: float
    kind: str
    channel: str | None = None
    arg: float | None = None
    duration_s: float | None = None

    def label(self) -> str:
        """The CLI spelling, e.g. '60:loadcell-freeze:a'."""
        parts = [f"{self.t:g}", self.kind]
        if self.channel:
            parts.append(self.channel)
        if self.arg is not None:
            parts.append(f"{self.arg:g}")
        return ":".join(parts)

"""Errors shared by every layer; each carries a message a clinician or integrator can act on."""

from __future__ import annotations


class SpinedecompError(Exception):
    """Base class of all spinedecomp errors."""


class ProtocolError(SpinedecompError):
    """A treatment protocol is invalid; `field` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class DeviceError(SpinedecompError):
    """A table could not be reached or refused a command."""


class SessionError(SpinedecompError):
    """A session operation is not allowed in the current state."""

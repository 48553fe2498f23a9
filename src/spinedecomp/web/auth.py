"""Accounts and roles.

Users live in the store's table ``users`` (model `spinedecomp.store.models.UserAccount`,
Alembic revision 0003), read and written through the store's `UserRepository`. Every change to
a user is written with an entry in the store's append-only audit log, in the same transaction.

Roles: a **clinician** screens, plans, records visits and outcomes and runs sessions; the
**front desk** sees the schedule (patients, sessions), cost estimates, patient summaries and
outcome reports, never telemetry controls; an **admin** manages accounts and reads the audit
log. Each role's rights are listed once, in `PERMISSIONS`.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spinedecomp.store.api import Store
from spinedecomp.store.repositories import UserRecord
from spinedecomp.web.security import hash_password, verify_password


class Role(StrEnum):
    """What a user may do."""

    CLINICIAN = "clinician"
    FRONT_DESK = "front-desk"
    ADMIN = "admin"


class Right(StrEnum):
    """One thing a role may do."""

    SCHEDULE = "schedule"  # patients list, sessions list, cost, summaries, outcome reports
    CLINICAL = "clinical"  # intake, screening, plan, visits, side effects, outcomes
    LIVE = "live"  # watch and control the table
    ADMIN = "admin"  # accounts, audit log


PERMISSIONS: dict[Role, frozenset[Right]] = {
    Role.CLINICIAN: frozenset({Right.SCHEDULE, Right.CLINICAL, Right.LIVE}),
    Role.FRONT_DESK: frozenset({Right.SCHEDULE}),
    Role.ADMIN: frozenset({Right.SCHEDULE, Right.ADMIN}),
}

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
MIN_PASSWORD = 10


class User(BaseModel):
    """A user account (never carries the password hash)."""

    model_config = ConfigDict(frozen=True)

    id: int
    username: str
    full_name: str
    role: Role
    active: bool
    created_at: datetime

    def can(self, right: Right) -> bool:
        """True if this user's role has `right`."""
        return self.active and right in PERMISSIONS[self.role]


class UserIn(BaseModel):
    """A new account."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=2, max_length=64)
    full_name: str = Field(default="", max_length=200)
    role: Role
    password: str = Field(min_length=MIN_PASSWORD, max_length=256)

    @field_validator("username")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _USERNAME.match(value):
            raise ValueError("lower-case letters, digits, '.', '_' or '-', starting with a letter "
                             "or digit")
        return value


SYSTEM = "system:web"  # the actor of read-only units (they write nothing to the audit log)


def _user(rec: UserRecord) -> User:
    return User.model_validate(rec.model_dump())


class UserStore:
    """Accounts in the clinic database: table ``users`` of the store's schema (revision 0003),
    through the store's audited `UserRepository`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, new: UserIn, *, actor: str, reason: str | None = None) -> User:
        """Create an account (Conflict if the name is taken); audited."""
        with self.store.unit(actor) as uow:
            rec = uow.users.add(username=new.username, role=new.role.value,
                                password_hash=hash_password(new.password),
                                full_name=new.full_name, reason=reason or "account created")
        return _user(rec)

    def set_active(self, user_id: int, active: bool, *, actor: str, reason: str | None = None) -> User:
        """Enable or disable an account; audited."""
        with self.store.unit(actor) as uow:
            return _user(uow.users.set_active(user_id, active, reason=reason))

    def get(self, user_id: int) -> User:
        """An account by id (NotFound if none)."""
        with self.store.unit(SYSTEM) as uow:
            return _user(uow.users.get(user_id))

    def by_name(self, username: str) -> User | None:
        """An account by name."""
        with self.store.unit(SYSTEM) as uow:
            rec = uow.users.by_name(username)
        return None if rec is None else _user(rec)

    def all(self) -> list[User]:
        """Every account by id."""
        with self.store.unit(SYSTEM) as uow:
            return [_user(r) for r in uow.users.all()]

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this name and password, else None (same work either way)."""
        with self.store.unit(SYSTEM) as uow:
            found = uow.users.password_hash(username)
        ok = verify_password(None if found is None else found[1], password)
        if found is None or not ok:
            return None
        user = _user(found[0])
        return user if user.active else None

    def count(self) -> int:
        """How many accounts exist."""
        return len(self.all())

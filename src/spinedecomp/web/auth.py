"""Accounts and roles.

Users live in their own table, ``web_user``, in the clinic database (created on first use by
the web layer; the clinical schema's migrations do not know it). Every change to a user is
written with an entry in the store's append-only audit log, in the same transaction.

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
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Session

from spinedecomp.store.api import Store
from spinedecomp.store.models import utcnow
from spinedecomp.store.repositories import AuditLog, Conflict, NotFound
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

_meta = MetaData()
users_table = Table(
    "web_user", _meta,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("full_name", String(200), nullable=False, default=""),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

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


def ensure_users_table(store: Store) -> None:
    """Create the user table if this database does not have it yet."""
    _meta.create_all(store.engine, checkfirst=True)


def _user(row: object) -> User:
    return User.model_validate(row, from_attributes=True)


class UserStore:
    """Accounts in the clinic database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        ensure_users_table(store)

    def add(self, new: UserIn, *, actor: str, reason: str | None = None) -> User:
        """Create an account (Conflict if the name is taken); audited."""
        with Session(self.store.engine) as s, s.begin():
            if s.execute(select(users_table.c.id).where(
                    users_table.c.username == new.username)).first() is not None:
                raise Conflict(f"user {new.username!r} already exists")
            s.execute(insert(users_table).values(
                username=new.username, full_name=new.full_name, role=new.role.value,
                password_hash=hash_password(new.password), active=True,
                created_at=utcnow()))
            row = s.execute(select(users_table).where(users_table.c.username == new.username)).one()
            user = _user(row)
            AuditLog(s).append(actor=actor, action="create", entity="user", entity_id=user.id,
                               before=None, after=user.model_dump(mode="json"),
                               reason=reason or "account created")
        return user

    def set_active(self, user_id: int, active: bool, *, actor: str, reason: str | None = None) -> User:
        """Enable or disable an account; audited."""
        with Session(self.store.engine) as s, s.begin():
            before = self._get(s, user_id)
            s.execute(update(users_table).where(users_table.c.id == user_id).values(active=active))
            after = self._get(s, user_id)
            AuditLog(s).append(actor=actor, action="update", entity="user", entity_id=user_id,
                               before={"active": before.active}, after={"active": after.active},
                               reason=reason)
        return after

    @staticmethod
    def _get(s: Session, user_id: int) -> User:
        row = s.execute(select(users_table).where(users_table.c.id == user_id)).first()
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return _user(row)

    def get(self, user_id: int) -> User:
        """An account by id (NotFound if none)."""
        with Session(self.store.engine) as s:
            return self._get(s, user_id)

    def by_name(self, username: str) -> User | None:
        """An account by name."""
        with Session(self.store.engine) as s:
            row = s.execute(select(users_table).where(users_table.c.username == username)).first()
            return None if row is None else _user(row)

    def all(self) -> list[User]:
        """Every account by id."""
        with Session(self.store.engine) as s:
            return [_user(r) for r in s.execute(select(users_table).order_by(users_table.c.id))]

    def authenticate(self, username: str, password: str) -> User | None:
        """The active user with this name and password, else None (same work either way)."""
        with Session(self.store.engine) as s:
            row = s.execute(select(users_table).where(users_table.c.username == username)).first()
        ok = verify_password(None if row is None else str(row.password_hash), password)
        if row is None or not ok:
            return None
        user = _user(row)
        return user if user.active else None

    def count(self) -> int:
        """How many accounts exist."""
        return len(self.all())

"""Initial schema: patients, clinical documents, sessions, events, alarms, telemetry, audit log.

Revision ID: 0001
Revises: -
Create Date: 2026-11-23 09:18:30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model column types: a migration must not change when models.py does.
JSON_DOC = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BLOB = sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql")


def upgrade() -> None:
    op.create_table("audit_log",
    sa.Column("id", BIG_ID, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(length=120), nullable=False),
    sa.Column("action", sa.String(length=8), nullable=False),
    sa.Column("entity", sa.String(length=40), nullable=False),
    sa.Column("entity_id", sa.String(length=64), nullable=False),
    sa.Column("before", JSON_DOC, nullable=True),
    sa.Column("after", JSON_DOC, nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log"))
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_log_entity_entity_id", ["entity", "entity_id"], unique=False)

    op.create_table("patients",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("code", sa.String(length=64), nullable=False),
    sa.Column("name", sa.String(length=200), nullable=False),
    sa.Column("birth_date", sa.Date(), nullable=True),
    sa.Column("sex", sa.String(length=16), nullable=True),
    sa.Column("body_weight_kg", sa.Float(), nullable=True),
    sa.Column("is_demo", sa.Boolean(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
    sa.UniqueConstraint("code", name=op.f("uq_patients_code"))
    )
    op.create_table("intakes",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("region", sa.String(length=16), nullable=True),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_intakes_patient_id_patients")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_intakes"))
    )
    with op.batch_alter_table("intakes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_intakes_patient_id"), ["patient_id"], unique=False)

    op.create_table("screening_decisions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("intake_id", sa.Integer(), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.String(length=40), nullable=False),
    sa.Column("pathway", sa.String(length=60), nullable=True),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["intake_id"], ["intakes.id"],
        name=op.f("fk_screening_decisions_intake_id_intakes")),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
        name=op.f("fk_screening_decisions_patient_id_patients")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_screening_decisions"))
    )
    with op.batch_alter_table("screening_decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_screening_decisions_patient_id"), ["patient_id"], unique=False)

    op.create_table("course_plans",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("decision_id", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("region", sa.String(length=16), nullable=True),
    sa.Column("protocol_name", sa.String(length=80), nullable=True),
    sa.Column("sessions_planned", sa.Integer(), nullable=True),
    sa.Column("status", sa.String(length=20), nullable=False),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["decision_id"], ["screening_decisions.id"],
        name=op.f("fk_course_plans_decision_id_screening_decisions")),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
        name=op.f("fk_course_plans_patient_id_patients")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_course_plans"))
    )
    with op.batch_alter_table("course_plans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_course_plans_patient_id"), ["patient_id"], unique=False)

    op.create_table("cost_estimates",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("plan_id", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("total", sa.Float(), nullable=True),
    sa.Column("currency", sa.String(length=3), nullable=True),
    sa.Column("payer", sa.String(length=40), nullable=True),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
        name=op.f("fk_cost_estimates_patient_id_patients")),
    sa.ForeignKeyConstraint(["plan_id"], ["course_plans.id"],
        name=op.f("fk_cost_estimates_plan_id_course_plans")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_estimates"))
    )
    with op.batch_alter_table("cost_estimates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cost_estimates_patient_id"), ["patient_id"], unique=False)

    op.create_table("sessions",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("plan_id", sa.Integer(), nullable=True),
    sa.Column("protocol_name", sa.String(length=80), nullable=False),
    sa.Column("region", sa.String(length=16), nullable=False),
    sa.Column("mode", sa.String(length=20), nullable=False),
    sa.Column("body_weight_kg", sa.Float(), nullable=False),
    sa.Column("rate_hz", sa.Float(), nullable=False),
    sa.Column("clinical_rate_hz", sa.Float(), nullable=False),
    sa.Column("device", sa.String(length=200), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("abort_reason", sa.Text(), nullable=True),
    sa.Column("protocol", JSON_DOC, nullable=False),
    sa.Column("spec", JSON_DOC, nullable=False),
    sa.Column("summary", JSON_DOC, nullable=True),
    sa.Column("created_by", sa.String(length=120), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("host", sa.String(length=255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("samples", sa.BigInteger(), nullable=False),
    sa.Column("last_t", sa.Float(), nullable=True),
    sa.Column("last_batch", sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_sessions_patient_id_patients")),
    sa.ForeignKeyConstraint(["plan_id"], ["course_plans.id"],
        name=op.f("fk_sessions_plan_id_course_plans")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions"))
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sessions_state"), ["state"], unique=False)

    op.create_table("blackbox_windows",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("session_id", sa.Integer(), nullable=False),
    sa.Column("trigger", sa.String(length=16), nullable=False),
    sa.Column("trigger_t", sa.Float(), nullable=False),
    sa.Column("t_from", sa.Float(), nullable=False),
    sa.Column("t_to", sa.Float(), nullable=False),
    sa.Column("label", sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
        name=op.f("fk_blackbox_windows_session_id_sessions"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_blackbox_windows"))
    )
    with op.batch_alter_table("blackbox_windows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_blackbox_windows_session_id"), ["session_id"], unique=False)

    op.create_table("session_alarms",
    sa.Column("id", BIG_ID, nullable=False),
    sa.Column("session_id", sa.Integer(), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("t", sa.Float(), nullable=False),
    sa.Column("kind", sa.String(length=40), nullable=False),
    sa.Column("code", sa.Integer(), nullable=False),
    sa.Column("priority", sa.String(length=8), nullable=False),
    sa.Column("technical", sa.Boolean(), nullable=False),
    sa.Column("condition", sa.Text(), nullable=False),
    sa.Column("value", sa.Float(), nullable=True),
    sa.Column("force_n", sa.Float(), nullable=True),
    sa.Column("action", sa.Text(), nullable=False),
    sa.Column("acknowledged", sa.Boolean(), nullable=False),
    sa.Column("acknowledged_by", sa.String(length=120), nullable=True),
    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
        name=op.f("fk_session_alarms_session_id_sessions"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_session_alarms")),
    sa.UniqueConstraint("session_id", "seq", name=op.f("uq_session_alarms_session_id"))
    )
    op.create_table("session_events",
    sa.Column("id", BIG_ID, nullable=False),
    sa.Column("session_id", sa.Integer(), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("t", sa.Float(), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("field", sa.String(length=64), nullable=True),
    sa.Column("old", sa.Float(), nullable=True),
    sa.Column("new", sa.Float(), nullable=True),
    sa.Column("wall_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
        name=op.f("fk_session_events_session_id_sessions"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_session_events")),
    sa.UniqueConstraint("session_id", "seq", name=op.f("uq_session_events_session_id"))
    )
    op.create_table("telemetry_chunks",
    sa.Column("id", BIG_ID, nullable=False),
    sa.Column("session_id", sa.Integer(), nullable=False),
    sa.Column("stream", sa.String(length=16), nullable=False),
    sa.Column("t0", sa.Float(), nullable=False),
    sa.Column("t1", sa.Float(), nullable=False),
    sa.Column("n_rows", sa.Integer(), nullable=False),
    sa.Column("n_cols", sa.Integer(), nullable=False),
    sa.Column("rate_hz", sa.Float(), nullable=False),
    sa.Column("encoding", sa.String(length=24), nullable=False),
    sa.Column("data", BLOB, nullable=False),
    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
        name=op.f("fk_telemetry_chunks_session_id_sessions"), ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_chunks"))
    )
    with op.batch_alter_table("telemetry_chunks", schema=None) as batch_op:
        batch_op.create_index("ix_telemetry_chunks_session_stream_t0",
            ["session_id", "stream", "t0"], unique=False)

    op.create_table("visits",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("plan_id", sa.Integer(), nullable=True),
    sa.Column("session_id", sa.Integer(), nullable=True),
    sa.Column("visit_no", sa.Integer(), nullable=True),
    sa.Column("visited_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decision", sa.String(length=20), nullable=True),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_visits_patient_id_patients")),
    sa.ForeignKeyConstraint(["plan_id"], ["course_plans.id"], name=op.f("fk_visits_plan_id_course_plans")),
    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_visits_session_id_sessions")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_visits"))
    )
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visits_patient_id"), ["patient_id"], unique=False)

    op.create_table("outcomes",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("plan_id", sa.Integer(), nullable=True),
    sa.Column("visit_id", sa.Integer(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("measure", sa.String(length=20), nullable=False),
    sa.Column("score", sa.Float(), nullable=True),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_outcomes_patient_id_patients")),
    sa.ForeignKeyConstraint(["plan_id"], ["course_plans.id"],
        name=op.f("fk_outcomes_plan_id_course_plans")),
    sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_outcomes_visit_id_visits")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes"))
    )
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outcomes_patient_id"), ["patient_id"], unique=False)

    op.create_table("side_effects",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("patient_id", sa.Integer(), nullable=False),
    sa.Column("visit_id", sa.Integer(), nullable=True),
    sa.Column("session_id", sa.Integer(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(length=60), nullable=False),
    sa.Column("severity", sa.String(length=20), nullable=True),
    sa.Column("document", JSON_DOC, nullable=False),
    sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
        name=op.f("fk_side_effects_patient_id_patients")),
    sa.ForeignKeyConstraint(["session_id"], ["sessions.id"],
        name=op.f("fk_side_effects_session_id_sessions")),
    sa.ForeignKeyConstraint(["visit_id"], ["visits.id"], name=op.f("fk_side_effects_visit_id_visits")),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_side_effects"))
    )
    with op.batch_alter_table("side_effects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_side_effects_patient_id"), ["patient_id"], unique=False)



def downgrade() -> None:
    with op.batch_alter_table("side_effects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_side_effects_patient_id"))

    op.drop_table("side_effects")
    with op.batch_alter_table("outcomes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outcomes_patient_id"))

    op.drop_table("outcomes")
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visits_patient_id"))

    op.drop_table("visits")
    with op.batch_alter_table("telemetry_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_chunks_session_stream_t0")

    op.drop_table("telemetry_chunks")
    op.drop_table("session_events")
    op.drop_table("session_alarms")
    with op.batch_alter_table("blackbox_windows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blackbox_windows_session_id"))

    op.drop_table("blackbox_windows")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_state"))
        batch_op.drop_index(batch_op.f("ix_sessions_patient_id"))

    op.drop_table("sessions")
    with op.batch_alter_table("cost_estimates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cost_estimates_patient_id"))

    op.drop_table("cost_estimates")
    with op.batch_alter_table("course_plans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_course_plans_patient_id"))

    op.drop_table("course_plans")
    with op.batch_alter_table("screening_decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_screening_decisions_patient_id"))

    op.drop_table("screening_decisions")
    with op.batch_alter_table("intakes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_intakes_patient_id"))

    op.drop_table("intakes")
    op.drop_table("patients")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_entity_entity_id")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")

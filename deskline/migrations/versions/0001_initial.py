"""The schema of deskline 0.1.0, the last release made with ``create_all``.

Every table deskline owns: the event log (``events``, ``open_turns``), the API's credentials
(``conversation_tokens``, ``human_agents``) and the built-in desk's system of record (``sor_*``).

A database made by 0.1.0 has some or all of these tables and no ``alembic_version``: this
revision creates only the tables that are missing and checks that the ones present have the
columns it expects, so ``deskline db upgrade`` adopts such a database without touching its rows.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_MD = sa.MetaData()


def _s(n: int | None = None) -> sa.String:
    return sa.String(n)


TABLES = [
    sa.Table(
        "events", _MD,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("conversation_id", _s(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("type", _s(48), nullable=False),
        sa.Column("v", sa.Integer(), nullable=False),
        sa.Column("data", _s(), nullable=False),
        sa.Column("message_key", _s(128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("conversation_id", "message_key", name="uq_events_conversation_message"),
        sa.UniqueConstraint("conversation_id", "seq", name="uq_events_conversation_seq"),
        sa.Index("ix_events_type", "type"),
    ),
    sa.Table(
        "open_turns", _MD,
        sa.Column("conversation_id", _s(64), primary_key=True),
        sa.Column("turn", sa.Integer(), primary_key=True),
        sa.Column("message_seq", sa.Integer(), nullable=False),
        sa.Column("accepted_at", sa.Float(), nullable=False),
        sa.Column("holder", _s(64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=False),
    ),
    sa.Table(
        "conversation_tokens", _MD,
        sa.Column("conversation_id", _s(64), primary_key=True),
        sa.Column("token_sha256", _s(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    ),
    sa.Table(
        "human_agents", _MD,
        sa.Column("key_id", _s(12), primary_key=True),
        sa.Column("name", _s(64), nullable=False, unique=True),
        sa.Column("salt", _s(32), nullable=False),
        sa.Column("key_scrypt", _s(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    ),
    sa.Table(
        "sor_customer", _MD,
        sa.Column("id", _s(32), primary_key=True),
        sa.Column("name", _s(200), nullable=False),
        sa.Column("email", _s(320), nullable=False),
        sa.Column("phone", _s(40), nullable=False),
        sa.Column("plan", _s(40), nullable=False),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("last_login", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("reset_sent_at", sa.DateTime(timezone=True), nullable=True),
    ),
    sa.Table(
        "sor_invoice", _MD,
        sa.Column("id", _s(32), primary_key=True),
        sa.Column("customer_id", _s(32), nullable=False, index=True),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", _s(3), nullable=False),
        sa.Column("issued", sa.Date(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("status", _s(16), nullable=False),
    ),
    sa.Table(
        "sor_charge", _MD,
        sa.Column("id", _s(32), primary_key=True),
        sa.Column("customer_id", _s(32), nullable=False, index=True),
        sa.Column("invoice_id", _s(32), nullable=False, index=True),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", _s(3), nullable=False),
        sa.Column("charged_on", sa.Date(), nullable=False),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("refund_id", _s(32), nullable=True),
        sa.Column("refunded_on", sa.Date(), nullable=True),
    ),
    sa.Table(
        "sor_payment", _MD,
        sa.Column("id", _s(32), primary_key=True),
        sa.Column("customer_id", _s(32), nullable=False, index=True),
        sa.Column("payee", _s(200), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("currency", _s(3), nullable=False),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("created", sa.Date(), nullable=False),
        sa.Column("estimated_arrival", sa.Date(), nullable=True),
        sa.Column("failure_reason", _s(400), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
    ),
    sa.Table(
        "sor_incident", _MD,
        sa.Column("id", _s(32), primary_key=True),
        sa.Column("component", _s(32), nullable=False, index=True),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", _s(1000), nullable=False),
        sa.Column("resolved", sa.DateTime(timezone=True), nullable=True),
    ),
    sa.Table(
        "sor_action_ledger", _MD,
        sa.Column("key", _s(200), primary_key=True),
        sa.Column("action", _s(40), nullable=False),
        sa.Column("customer_id", _s(32), nullable=False, index=True),
        sa.Column("target", _s(64), nullable=False),
        sa.Column("facts", _s(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    ),
]


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in TABLES:
        if not inspector.has_table(table.name):
            table.create(bind)
            continue
        # Adopting a 0.1.0 database: the table must be the one 0.1.0 made.
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = sorted(set(table.c.keys()) - present)
        if missing:
            raise RuntimeError(
                f"table {table.name!r} exists but lacks column(s) {', '.join(missing)}: it was not made by "
                "deskline 0.1.0, so it cannot be adopted; move it aside or use another database"
            )


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind, checkfirst=True)

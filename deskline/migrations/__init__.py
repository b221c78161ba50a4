"""Alembic migrations of every table deskline owns: ``deskline db upgrade`` runs them.

A new revision: ``alembic -x ... revision`` is not needed; write ``versions/NNNN_what.py`` by hand
(or ``deskline.eventlog.schema.alembic_config(url)`` with ``alembic.command.revision``), move
``HEAD`` in ``deskline/eventlog/schema.py`` to it, and tests/test_migrations.py checks that a
database upgraded step by step equals one created fresh.
"""

"""Alembic's environment for deskline's own tables.

``deskline db upgrade`` passes an open connection (``config.attributes["connection"]``), already
holding the migration lock. Run by ``alembic`` directly, the URL is ``sqlalchemy.url`` from the
config, else ``DESKLINE_DATABASE_URL`` (the same one ``deskline serve`` uses).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from deskline.eventlog.schema import VERSION_TABLE, database_url, target_metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url") or database_url(),
                      target_metadata=target_metadata(), version_table=VERSION_TABLE, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        from deskline.eventlog.database import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url") or database_url())
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()

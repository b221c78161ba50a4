"""The built-in system of record's reads on PostgreSQL, straight on the driver.

A read through SQLAlchemy Core costs ~140 us of CPU (a ``Connection``, an execution context, the
compiled-statement cache, result processing) for a statement the server answers in tens: most
of a PostgreSQL turn's system-of-record time. Here each prebuilt statement is compiled once to
the driver's SQL and run on a pooled connection in autocommit (one round trip, no ROLLBACK),
and its rows come back as named tuples. Only on PostgreSQL: psycopg returns dates, times and
numbers as the columns' Python types already, where SQLite hands back text that SQLAlchemy's
result processing turns into dates.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from sqlalchemy import Engine, Select


class DriverReads:
    """Run prebuilt ``Select`` statements (module constants: each is compiled once) on the driver."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._compiled: dict[Select[Any], tuple[str, dict[str, Any], Any]] = {}

    def rows(self, query: Select[Any], params: dict[str, Any] | None = None) -> list[Any]:
        found = self._compiled.get(query)
        if found is None:
            compiled = query.compile(dialect=self.engine.dialect)
            shape: Any = namedtuple("Row", [c.key for c in query.selected_columns])  # type: ignore[misc]
            found = self._compiled[query] = (str(compiled), dict(compiled.params), shape)
        sql, defaults, row = found
        conn = self.engine.raw_connection()
        try:
            driver: Any = conn.driver_connection
            driver.autocommit = True  # a local setting: no round trip
            cur = conn.cursor()
            cur.execute(sql, {**defaults, **params} if params else defaults)
            data = cur.fetchall()
            driver.autocommit = False
        except BaseException:
            conn.invalidate()  # in a state nobody checked: not pooled again
            raise
        finally:
            conn.close()
        return [row._make(r) for r in data]


__all__ = ["DriverReads"]

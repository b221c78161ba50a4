"""A throwaway PostgreSQL schema for one benchmark run: created, pointed at, dropped."""

from __future__ import annotations

import uuid


def pg_schema(url: str) -> tuple[str, str]:
    """A URL pointing at a fresh schema, and the schema's name (drop it with ``drop_schema``)."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{url}?options=-csearch_path%3D{schema}", schema


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

"""The PostgreSQL append as one statement: the same atomic append for the synchronous store
(``SqlEventStore``, then one COMMIT) and the asyncio one (``AsyncSqlEventStore``, autocommit).

The statement's CTEs check the head, check the turn's lease (a locking read), insert the events,
and open or close the turn; sub-statements share a snapshot and ``(conversation_id, seq)`` is
unique, so a concurrent append fails with an IntegrityError instead of leaving a gap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from deskline.errors import ConcurrencyConflict
from deskline.eventlog.events import Recorded
from deskline.eventlog.store import _lease_lost, _message_key

__all__ = ["APPEND", "LEASE", "LOAD", "append_params", "check_append"]

# The other hot-path statements, in psycopg's placeholders (the asyncio stores swap in "?" for aiosqlite).
LOAD = "SELECT seq, turn, data, created_at FROM events WHERE conversation_id = %s AND seq > %s ORDER BY seq"
LEASE = ("UPDATE open_turns SET holder = %s, lease_until = %s WHERE conversation_id = %s AND turn = %s "
         "AND (holder IS NULL OR holder = %s OR lease_until < %s)")

# One statement, one round trip, one transaction. Sub-statements share a snapshot, so the lease
# is checked with a locking read (``FOR UPDATE`` waits for a concurrent taker and re-reads the
# row); ``(conversation_id, seq)`` being unique turns a concurrent append into an IntegrityError.
APPEND = """
WITH head AS (
    SELECT %(expected)s::int = 0 OR EXISTS (
        SELECT 1 FROM events WHERE conversation_id = %(cid)s AND seq = %(expected)s::int) AS ok
), leased AS (
    SELECT 1 FROM open_turns
    WHERE %(check_lease)s AND conversation_id = %(cid)s AND turn = %(lease_turn)s::int
      AND (holder IS NULL OR holder = %(holder)s::text OR lease_until < %(now)s)
    FOR UPDATE
), allowed AS (
    SELECT (SELECT ok FROM head) AND (NOT %(check_lease)s OR EXISTS (SELECT 1 FROM leased)) AS ok
), inserted AS (
    INSERT INTO events (conversation_id, seq, turn, type, v, data, message_key, created_at)
    SELECT %(cid)s, e.seq, %(turn)s, e.type, e.v, e.data, e.message_key, %(now)s
    FROM json_to_recordset(%(events)s::json) AS e(seq int, type text, v int, data text, message_key text)
    WHERE (SELECT ok FROM allowed)
    RETURNING 1
), closed AS (
    DELETE FROM open_turns
    WHERE conversation_id = %(cid)s AND turn = ANY(%(closes)s::int[]) AND (SELECT ok FROM allowed)
    RETURNING 1
), opened AS (
    INSERT INTO open_turns (conversation_id, turn, message_seq, accepted_at, holder, lease_until)
    SELECT %(cid)s, o.turn, o.seq, %(now)s, %(holder)s::text, %(open_until)s
    FROM json_to_recordset(%(opens)s::json) AS o(turn int, seq int)
    WHERE (SELECT ok FROM allowed)
    RETURNING 1
)
SELECT (SELECT ok FROM head), (SELECT ok FROM allowed), (SELECT count(*) FROM inserted)
"""


def append_params(conversation_id: str, expected_seq: int, turn: int, recorded: Sequence[Recorded],
                  opened: Sequence[Recorded], closed: Sequence[Recorded], holder: str | None, ttl_s: float,
                  now: float) -> dict[str, Any]:
    """``APPEND``'s parameters (a closing append opens nothing)."""
    opened = [] if closed else opened
    return {
        "cid": conversation_id, "expected": expected_seq, "turn": turn, "now": now,
        "check_lease": holder is not None and bool(closed),
        "lease_turn": closed[0].turn if closed else 0, "holder": holder,
        # The rows as one JSON text: psycopg dumps a list parameter element by element in Python
        # (escaping every quote of every event's JSON through a regex), 15-20 % of an append's CPU.
        "events": json.dumps([{"seq": r.seq, "type": r.event.type, "v": r.event.v, "data": r.event.model_dump_json(),
                               "message_key": _message_key(r.event)} for r in recorded]),
        "closes": "{" + ",".join(str(r.turn) for r in closed) + "}",  # an int[] literal
        "opens": json.dumps([{"turn": r.turn, "seq": r.seq} for r in opened]),
        "open_until": now + ttl_s if holder is not None else 0.0,
    }


def check_append(row: Sequence[Any], conversation_id: str, expected_seq: int, closed: Sequence[Recorded]) -> None:
    """Raise what ``APPEND``'s answer row (head ok, allowed, inserted) says went wrong, if anything."""
    head_ok, allowed, _n = row
    if not head_ok:
        raise ConcurrencyConflict(f"conversation {conversation_id} has no event {expected_seq}",
                                  conversation_id=conversation_id, expected_seq=expected_seq)
    if not allowed:
        raise _lease_lost(conversation_id, closed[0].turn)

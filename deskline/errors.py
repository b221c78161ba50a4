"""One error tree for the whole desk.

    DesklineError
    ├── InputError              bad customer input; nothing was appended
    │   ├── EmptyMessage
    │   ├── MessageTooLong
    │   └── InvalidEncoding
    ├── ConfigError             a setting or a models file that cannot be used
    ├── StoreError              the event store
    │   ├── StoreUnavailable    the database cannot be reached
    │   ├── ConcurrencyConflict another writer appended first (expected seq was stale)
    │   │   └── LeaseLost       the turn's lease passed to another desk before this one appended
    │   └── CorruptEvent        a stored row that does not parse as a known event
    ├── PlanError               a plan that does not validate against the registry
    ├── SkillError              an agent skill failed (transient or not)
    │   ├── RecordChanged       the record changed under the action: the skill runs again on it
    │   │   └── ActionRejected  the record is in the wrong state for the action   (agents.builtin.backend.port)
    │   ├── IdempotencyConflict a key reused for another action or target        (agents.backend.port)
    │   └── BackendUnavailable  the system of record cannot be reached (transient)(agents.backend.port)
    └── BudgetExceeded          a model call past the turn's budget

Signals that steer a turn (needs info, escalate) are results, not exceptions: see
``deskline.handoffs.payload.AgentResult``. Every error carries structured fields so the CLI
and the API can print a clear message without a stack trace.
"""

from __future__ import annotations


class DesklineError(Exception):
    """Root of every error the desk raises on purpose."""

    code = "deskline_error"

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def to_dict(self) -> dict[str, object]:
        return {"error": self.code, "message": self.message, **self.fields}


class InputError(DesklineError):
    code = "invalid_input"


class EmptyMessage(InputError):
    code = "empty_message"


class MessageTooLong(InputError):
    code = "message_too_long"


class InvalidEncoding(InputError):
    code = "invalid_encoding"


class ConfigError(DesklineError):
    code = "config_error"


class StoreError(DesklineError):
    code = "store_error"


class StoreUnavailable(StoreError):
    code = "store_unavailable"


class ConcurrencyConflict(StoreError):
    code = "concurrency_conflict"


class LeaseLost(ConcurrencyConflict):
    """The turn's lease passed to another desk (this one stalled past it): its decision stands."""

    code = "lease_lost"


class CorruptEvent(StoreError):
    code = "corrupt_event"


class UnknownConversation(DesklineError):
    code = "unknown_conversation"


class PlanError(DesklineError):
    code = "invalid_plan"


class SkillError(DesklineError):
    code = "skill_error"

    def __init__(self, message: str, *, transient: bool = False, **fields: object) -> None:
        super().__init__(message, transient=transient, **fields)
        self.transient = transient


class RecordChanged(SkillError):
    """The record an action was about to change is no longer as the skill read it (another
    conversation or a person changed it first). The operation layer runs the skill once more, so
    it reads the record again and answers from what it is now ("already refunded on ...")."""

    code = "record_changed"


class BudgetExceeded(DesklineError):
    code = "budget_exceeded"

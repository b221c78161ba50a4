"""The event-sourced log: events, stores and pure folds. The desk's only state."""

from deskline.eventlog.events import EVENT_ADAPTER, Event, Recorded
from deskline.eventlog.projections import ConversationState, fold
from deskline.eventlog.store import EventStore, MemoryEventStore, SqlEventStore

__all__ = ["EVENT_ADAPTER", "ConversationState", "Event", "EventStore", "MemoryEventStore", "Recorded",
           "SqlEventStore", "fold"]

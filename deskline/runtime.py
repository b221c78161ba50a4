"""Wiring: a ``SupportDesk`` with the default ports for a settings object.

The only place that picks implementations; everything else receives its ports.
"""

from __future__ import annotations

from deskline.config import Settings
from deskline.hierarchy.desk import SupportDesk


def _configure_logs(settings: Settings) -> None:
    import structlog

    if not structlog.is_configured():
        from deskline.logs import configure

        configure(settings.log_format, settings.log_level)


def open_desk(settings: Settings) -> SupportDesk:
    """The desk on the configured database, with the demo system of record seeded in it."""
    from deskline.agents import default_registry
    from deskline.agents.backend.sql import SqlBackend
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.store import SqlEventStore
    from deskline.routing.classifier import load_classifier

    _configure_logs(settings)
    engine = make_engine(settings.database_url)
    store = SqlEventStore(engine)
    return SupportDesk(
        store=store,
        backend=SqlBackend(engine),
        registry=default_registry(),
        classifier=load_classifier(threshold=settings.abstain_threshold),
        settings=settings,
    )


def memory_desk(settings: Settings | None = None) -> SupportDesk:
    """The desk entirely in process memory: for tests, benchmarks and the eval suite."""
    from deskline.agents import default_registry
    from deskline.agents.backend.memory import MemoryBackend
    from deskline.eventlog.store import MemoryEventStore
    from deskline.routing.classifier import load_classifier

    settings = settings or Settings()
    _configure_logs(settings)
    return SupportDesk(
        store=MemoryEventStore(),
        backend=MemoryBackend(),
        registry=default_registry(),
        classifier=load_classifier(threshold=settings.abstain_threshold),
        settings=settings,
    )

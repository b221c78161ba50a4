"""Wiring: a ``SupportDesk`` with the default ports for a settings object and a desk definition.

The only place that picks implementations; everything else receives its ports. The desk is
``desk`` if given, else the one the settings name (``--desk`` / ``DESKLINE_DESK``), else the
built-in desk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deskline.config import Settings
from deskline.definition import Desk, load_desk
from deskline.hierarchy.desk import SupportDesk

if TYPE_CHECKING:
    from deskline.observe.hooks import Observer
    from deskline.routing.cache import RouteCache
    from deskline.routing.models import ModelGateway


def desk_for(settings: Settings, desk: Desk | None = None) -> Desk:
    """``desk`` (with the settings' router, if they name one), else the desk the settings name."""
    if desk is not None:
        from deskline.definition import validate

        return validate(desk.with_router(settings.router_path))
    return load_desk(settings.desk, router=settings.router_path)


def open_desk(settings: Settings, observer: Observer | None = None, desk: Desk | None = None) -> SupportDesk:
    """The desk on the configured database, its system of record opened on the same engine."""
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.store import SqlEventStore

    definition = desk_for(settings, desk)
    engine = make_engine(settings.database_url)
    classifier = definition.classifier(settings.abstain_threshold)
    models, cache = model_layer(settings, classifier.threshold)
    return SupportDesk(
        store=SqlEventStore(engine),
        desk=definition,
        records=definition.system_of_record(engine, settings.database_url),
        classifier=classifier,
        settings=settings,
        models=models,
        cache=cache,
        observer=observer,
    )


def model_layer(settings: Settings, threshold: float) -> tuple[ModelGateway | None, RouteCache]:
    """The model router for the settings' models file (None without one), and the plan cache,
    namespaced by the configuration's fingerprint so a changed config never reuses old plans."""
    from deskline.routing.cache import RedisPlans, RouteCache

    if settings.models_path is None:
        return None, RouteCache(namespace=f"local:{threshold}:")
    from deskline.routing.llm_config import load_models
    from deskline.routing.models import ModelRouter

    config = load_models(settings.models_path)
    extra = config.deskline
    shared = RedisPlans(extra.redis_url) if extra.redis_url else None
    cache = RouteCache(namespace=f"{config.fingerprint()}:{threshold}:", ttl_s=extra.plan_cache_ttl_s, shared=shared)
    return ModelRouter(config), cache


def memory_desk(settings: Settings | None = None, observer: Observer | None = None,
                desk: Desk | None = None) -> SupportDesk:
    """The desk entirely in process memory: for tests, benchmarks and the eval suite."""
    from deskline.eventlog.store import MemoryEventStore

    settings = settings or Settings()
    definition = desk_for(settings, desk)
    classifier = definition.classifier(settings.abstain_threshold)
    models, cache = model_layer(settings, classifier.threshold)
    return SupportDesk(
        store=MemoryEventStore(),
        desk=definition,
        records=definition.system_of_record(None, None),
        classifier=classifier,
        settings=settings,
        models=models,
        cache=cache,
        observer=observer,
    )


def freeze_startup_heap() -> None:
    """Take what start-up left alive (imported modules, the router's model, the desk's definition)
    out of the garbage collector's full collections, for a long-running server.

    Those collections stop every turn of the process while they walk the heap: ~30-75 ms each
    with the start-up objects included, a few times a minute under load, which was most of a
    turn's p99 at a set load on PostgreSQL (bench/pg_throughput.py). Objects made later are
    collected as before; only what existed now is never walked again (``gc.freeze``)."""
    import gc

    gc.collect()
    gc.freeze()

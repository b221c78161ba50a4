"""Wiring: a ``SupportDesk`` with the default ports for a settings object.

The only place that picks implementations; everything else receives its ports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deskline.config import Settings
from deskline.hierarchy.desk import SupportDesk

if TYPE_CHECKING:
    from deskline.observe.hooks import Observer
    from deskline.routing.cache import RouteCache
    from deskline.routing.models import ModelGateway


def open_desk(settings: Settings, observer: Observer | None = None) -> SupportDesk:
    """The desk on the configured database, with the demo system of record seeded in it."""
    from deskline.agents import default_registry
    from deskline.agents.builtin.backend.sql import SqlBackend
    from deskline.eventlog.database import make_engine
    from deskline.eventlog.store import SqlEventStore
    from deskline.routing.classifier import load_classifier

    engine = make_engine(settings.database_url)
    store = SqlEventStore(engine)
    classifier = load_classifier(threshold=settings.abstain_threshold)
    models, cache = model_layer(settings, classifier.threshold)
    return SupportDesk(
        store=store,
        backend=SqlBackend(engine),
        registry=default_registry(),
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


def memory_desk(settings: Settings | None = None, observer: Observer | None = None) -> SupportDesk:
    """The desk entirely in process memory: for tests, benchmarks and the eval suite."""
    from deskline.agents import default_registry
    from deskline.agents.builtin.backend.memory import MemoryBackend
    from deskline.eventlog.store import MemoryEventStore
    from deskline.routing.classifier import load_classifier

    settings = settings or Settings()
    classifier = load_classifier(threshold=settings.abstain_threshold)
    models, cache = model_layer(settings, classifier.threshold)
    return SupportDesk(
        store=MemoryEventStore(),
        backend=MemoryBackend(),
        registry=default_registry(),
        classifier=classifier,
        settings=settings,
        models=models,
        cache=cache,
        observer=observer,
    )

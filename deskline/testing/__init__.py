"""Test utilities that ship with deskline, for its own tests and for fault-injection scripts.

``FakeOpenAI`` is an OpenAI-compatible chat-completions server (stdlib only, in a background
thread or as ``python -m deskline.testing.fake_openai``) whose answers can be scripted and whose
faults (500, 429, slow, malformed tool calls, invalid structured output) can be injected per
model name or at a seeded rate, so the model layer's fallbacks and error handling are tested
over real HTTP without a real provider.

The names are loaded lazily (PEP 562): importing the submodule from here eagerly would make
``python -m deskline.testing.fake_openai`` warn that the module was imported twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deskline.testing.fake_openai import (
        FAULT_KINDS,
        Brain,
        FakeOpenAI,
        FaultKind,
        ModelBehaviour,
        Reply,
        RequestRecord,
        ToolCall,
        default_brain,
        remote_reset,
        remote_stats,
        schema_example,
        schema_violation,
    )

__all__ = [
    "FAULT_KINDS",
    "Brain",
    "FakeOpenAI",
    "FaultKind",
    "ModelBehaviour",
    "Reply",
    "RequestRecord",
    "ToolCall",
    "default_brain",
    "remote_reset",
    "remote_stats",
    "schema_example",
    "schema_violation",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from deskline.testing import fake_openai

        return getattr(fake_openai, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

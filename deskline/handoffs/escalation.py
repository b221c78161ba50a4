"""The warm transfer to a person: what the human agent sees, built by pure rules."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from deskline.handoffs.payload import AgentResult, Entities
from deskline.privacy import mask


def summary(text: str, intent: str, entities: Entities, results: Sequence[AgentResult],
            hide: Collection[str] = ()) -> str:
    """One paragraph a person can act on without reading the transcript (``hide``: entity
    names left out, the desk's personal data). It is shown in the queue list, so personal data
    is masked (``deskline.privacy.mask``); the transcript a claimed agent reads is not."""
    parts = [f"Customer wrote: {mask(text.strip())[:300]!r}.", f"Triage intent: {intent or 'unknown'}."]
    mentioned = "; ".join(f"{k}: {', '.join(v)}" for k, v in entities.values.items() if v and k not in hide)
    if mentioned:
        parts.append(f"Mentioned {mask(mentioned)}.")
    for r in results:
        parts.append(f"{r.skill} -> {r.status}{' (' + mask(r.reason) + ')' if r.reason else ''}.")
    return " ".join(parts)


def pending_action(results: Sequence[AgentResult]) -> dict[str, str] | None:
    """The action waiting for a person's approval, if a step stopped at the gate."""
    for r in results:
        if r.status == "pending_approval":
            return {"skill": r.skill, "step_id": r.step_id, "reason": r.reason, **r.facts}
    return None

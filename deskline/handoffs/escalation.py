"""The warm transfer to a person: what the human agent sees, built by pure rules."""

from __future__ import annotations

from collections.abc import Sequence

from deskline.handoffs.payload import AgentResult, Entities


def priority_for(reasons: Sequence[str]) -> int:
    """1 is the most urgent: fraud and lost cards first, then everything else."""
    joined = " ".join(reasons).lower()
    return 1 if ("fraud" in joined or "stolen" in joined) else 2


def summary(text: str, intent: str, entities: Entities, results: Sequence[AgentResult]) -> str:
    """One paragraph a person can act on without reading the transcript."""
    parts = [f"Customer wrote: {text.strip()[:300]!r}.", f"Triage intent: {intent or 'unknown'}."]
    named = {
        "invoices": entities.invoice_ids,
        "payments": entities.payment_ids,
        "charges": entities.charge_ids,
        "amounts": tuple(str(a) for a in entities.amounts),
    }
    mentioned = "; ".join(f"{k}: {', '.join(v)}" for k, v in named.items() if v)
    if mentioned:
        parts.append(f"Mentioned {mentioned}.")
    for r in results:
        parts.append(f"{r.skill} -> {r.status}{' (' + r.reason + ')' if r.reason else ''}.")
    return " ".join(parts)


def pending_action(results: Sequence[AgentResult]) -> dict[str, str] | None:
    """The action waiting for a person's approval, if a step stopped at the gate."""
    for r in results:
        if r.status == "pending_approval":
            return {"skill": r.skill, "step_id": r.step_id, "reason": r.reason, **r.facts}
    return None

"""The built-in desk's policies on who may do what, and when money may move without a person."""

from __future__ import annotations

from deskline.agents.registry import SkillCall
from deskline.handoffs.payload import Money

SENSITIVE_S = 900.0  # actions that change the account need a verification in the last 15 minutes


def refund_policy(call: SkillCall, action: str, amount: Money | None, target: str) -> str | None:
    """A refund runs on its own only for a real duplicate: a charge that repeats an earlier charge
    of the same invoice for the same amount, never more than was charged, and never the last
    charge standing on a paid invoice. Anything else waits for a person, with the reason."""
    records = call.records
    charge = records.charge(call.customer_id, target)
    if charge is None:
        return None  # nothing to refund: the action itself says so
    if amount is not None and amount.amount > charge.amount:
        return f"{amount} is more than charge {charge.id} took ({charge.money})"
    siblings = list(records.charges(call.customer_id, charge.invoice_id))  # oldest first
    position = next((i for i, c in enumerate(siblings) if c.id == charge.id), 0)
    if not any(c.amount == charge.amount and c.currency == charge.currency for c in siblings[:position]):
        return (f"charge {charge.id} is not a repeat of an earlier charge on invoice {charge.invoice_id}: "
                "refunding a charge that is not a duplicate needs a person's approval")
    others = [c for c in siblings if c.id != charge.id and c.status == "captured"]
    invoice = records.invoice(call.customer_id, charge.invoice_id)
    if invoice is not None and invoice.status == "paid" and not others:
        return f"refunding {charge.id} would leave paid invoice {charge.invoice_id} with no charge"
    return None

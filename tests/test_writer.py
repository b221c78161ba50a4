"""The grounding check: the reply may only state facts the results hold."""

from deskline.handoffs.payload import AgentResult
from deskline.hierarchy.writer import ungrounded


def result(**facts: str) -> AgentResult:
    return AgentResult(step_id="s1", agent="billing", skill="billing.lookup_invoice", status="ok", facts=facts)


def test_grounded_reply_passes() -> None:
    """Amounts, ids and dates that appear in a result are grounded."""
    r = result(invoice_id="INV-1001", amount="$49.00", issued="2026-11-01")
    assert ungrounded("Invoice INV-1001 for $49.00 was issued on 2026-11-01.", [r]) == []


def test_invented_facts_are_caught() -> None:
    """An amount, id or date no result mentions is reported."""
    r = result(invoice_id="INV-1001", amount="$49.00")
    problems = ungrounded("Invoice INV-1002 for $94.00 was refunded on 2026-12-24, due March 3, 2025.", [r])
    assert problems == ["$94.00", "INV-1002", "2026-12-24", "March 3, 2025"]


def test_ids_the_customer_named_are_grounded() -> None:
    """Repeating an id the customer wrote is not an invention."""
    assert ungrounded("I couldn't find PAY-9999.", [], said="where is PAY-9999?") == []

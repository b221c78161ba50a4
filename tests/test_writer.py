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
    assert problems == ["INV-1002", "$94.00", "2025-03-03", "2026-12-24"]


def test_ids_the_customer_named_are_grounded() -> None:
    """Repeating an id the customer wrote is not an invention."""
    assert ungrounded("I couldn't find PAY-9999.", [], said="where is PAY-9999?") == []


FACTS = result(invoice_id="INV-1001", amount="$49.00", issued="March 14, 2025", link_expires="March 14, 2025 at 09:30 UTC")


def test_parts_of_ids_and_amounts_are_not_grounded() -> None:
    """'INV-100' and '$4' are substrings of INV-1001 and $49.00, not the same facts."""
    assert ungrounded("Invoice INV-100 is $4.", [FACTS]) == ["INV-100", "$4.00"]


def test_times_and_other_date_formats_are_checked() -> None:
    """A changed time, a date in another format and a made-up reference are all caught."""
    assert ungrounded("The link expires at 17:56 UTC.", [FACTS]) == ["17:56"]
    assert ungrounded("49 dollars on 3/15/2025, ref RF-99", [FACTS]) == ["RF-99", "2025-03-15"]
    assert ungrounded("Issued 3/14/2025, 49 dollars, expires 09:30 UTC.", [FACTS]) == []


def test_a_date_broken_over_a_line_is_still_the_date() -> None:
    """Whitespace of any kind, newlines included, is normalised before comparing."""
    assert ungrounded("Issued on March 14,\n2025.", [FACTS]) == []


def test_junk_a_model_writes_is_refused() -> None:
    """Role labels, special tokens, HTML entities, JSON, placeholders, prompt echoes and dropped facts."""
    from deskline.hierarchy.checks import junk

    draft = "Invoice INV-1001 for $49.00 was issued on March 14, 2025."
    good = "Good news: invoice INV-1001 ($49.00) was issued on March 14, 2025."
    assert junk(good, draft) == []
    cases = {
        "Customer: Do you have a customer service call? INV-1001 $49.00 March 14, 2025": "role label",
        "<|im_start|>assistant INV-1001 $49.00 March 14, 2025": "special token",
        "I&#39;m happy to help: INV-1001, $49.00, March 14, 2025": "HTML entity",
        '{"invoice_id": "INV-1001", "amount": "$49.00", "issued": "March 14, 2025"}': "JSON",
        "Invoice {invoice_id} for $49.00, March 14, 2025, INV-1001": "placeholder",
        "Your invoice is fine.": "drops facts",
    }
    for reply, why in cases.items():
        assert any(why.split()[0] in p for p in junk(reply, draft)), (reply, junk(reply, draft))
    prompt = "You write the reply a customer-support desk sends. You get the customer's message"
    assert junk("You write the reply a customer-support desk sends. INV-1001 $49.00 March 14, 2025", draft,
                (prompt,)) == ["the reply repeats its instructions"]


def test_what_a_model_adds_beyond_its_inputs_is_refused() -> None:
    """Numbers, addresses, the desk's internal words, repetition and rambling that nothing the
    model was given supports each stop a model-written reply; a faithful rewrite passes."""
    from deskline.hierarchy.checks import model_text_problems, unsupported

    draft = "Invoice INV-1001 for $49.00 was issued on March 14, 2025. A refund takes 3-5 business days."
    said = "why was I charged twice for INV-1001?"
    good = "Sorry about that! Invoice INV-1001 ($49.00) was issued on 3/14/2025; refunds take 3 to 5 business days."
    assert model_text_problems(good, [FACTS], draft=draft, said=said) == []
    cases = {
        "Invoice INV-1001 ($49.00, March 14, 2025) is refunded within 24 hours.": "numbers",
        "Invoice INV-1001 ($49.00, March 14, 2025): call 555-0199 for help.": "numbers",
        "Invoice INV-1001 ($49.00, March 14, 2025). Write to help@bank-support.example.": "email",
        "Invoice INV-1001 ($49.00, March 14, 2025). See https://evil.example/refund.": "web address",
        "According to the draft, invoice INV-1001 ($49.00, March 14, 2025) is paid.": "internal",
        "I ran billing.lookup_invoice: INV-1001 ($49.00, March 14, 2025) is paid.": "internal",
        "Paid paid paid paid: INV-1001 ($49.00, March 14, 2025).": "repeated",
        "INV-1001 is paid. INV-1001 is paid. INV-1001 is paid. $49.00, March 14, 2025.": "repeated",
        "INV-1001. $49.00. March 14, 2025. Thanks. Bye. See you. Take care.": "longer",
    }
    for reply, why in cases.items():
        problems = unsupported(reply, [FACTS], draft, said)
        assert any(why in p for p in problems), (reply, problems)
        assert model_text_problems(reply, [FACTS], draft=draft, said=said), reply
    # the planner's question: only the customer's own words count as given
    assert model_text_problems("Which invoice do you mean, INV-1001 or another one?", [], said=said) == []
    assert model_text_problems("Is it invoice INV-1002 for $12.00?", [], said=said)


def test_the_planners_question_must_be_one_short_question() -> None:
    """A form label, a statement or a speech is not a question the desk sends."""
    from deskline.hierarchy.checks import question_problems

    said = "something is wrong with my account"
    assert question_problems("Which account do you mean: checking or savings?", said) == []
    assert question_problems("¿Qué cuenta quiere decir?", "algo pasa con mi cuenta") == []
    for bad in ("What is your name? (optional):", "Your account is fine.",
                "Hello. Thanks. What do you need? Anything else? Tell me?"):
        assert question_problems(bad, said), bad

"""How the built-in desk resolves a record the customer describes instead of naming it.

"my payment to Brightwater Utilities", "the transfer to my landlord", "the $86.40 one" -> the
payment; "the open invoice", "my latest bill", "the $750 one" -> the invoice. Each resolver reads
only the customer's own records, and only when the text has a cue for it (so an ordinary turn
costs no lookup).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from deskline.handoffs.money import find_amounts

_PAYMENT_CUE = re.compile(r"\b(?:pay(?:ment|ments|ing)?|paid|transfer\w*|sent|send|wire\w*|to\s+(?:my|the)\b"
                          r"|(?:one|money)\s+to\b)",
                          re.IGNORECASE)
_INVOICE_CUE = re.compile(r"\b(?:invoices?|bills?|one|statement)\b", re.IGNORECASE)
_OPEN = re.compile(r"\b(?:open|unpaid|outstanding|not\s+paid|still\s+due)\b", re.IGNORECASE)
_LATEST = re.compile(r"\b(?:latest|last|newest|most\s+recent|recent|current)\b", re.IGNORECASE)
_GENERIC = frozenset({"services", "service", "apartments", "company", "limited", "bank", "account"})


def _words(name: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]{4,}", name.lower()) if w not in _GENERIC]


def payments_referred(records: Any, customer_id: str, text: str) -> Iterable[str]:
    """The customer's payments the text describes by payee or by amount."""
    if not _PAYMENT_CUE.search(text):
        return ()
    low = text.lower()
    amounts = {m.amount for m in find_amounts(text)}
    return [p.id for p in records.payments(customer_id)
            if any(re.search(rf"\b{w}\b", low) for w in _words(p.payee)) or p.amount in amounts]


def invoices_referred(records: Any, customer_id: str, text: str) -> Iterable[str]:
    """The customer's invoices the text describes: the open one(s), the latest, or by amount."""
    if not _INVOICE_CUE.search(text):
        return ()
    invoices = records.invoices(customer_id)  # newest first
    if _OPEN.search(text):
        return [i.id for i in invoices if i.status == "open"]
    amounts = {m.amount for m in find_amounts(text)}
    if amounts:
        return [i.id for i in invoices if i.amount in amounts]
    if _LATEST.search(text) and invoices:
        return [invoices[0].id]
    return ()

"""Entity extraction from a customer's words: ids, amounts, emails, card digits.

Pure functions over text with compiled regular expressions; about 20 µs a message.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from deskline.handoffs.payload import Entities, Money

_INVOICE = re.compile(r"\bINV[-\s#]?(\d{3,10})\b", re.IGNORECASE)
_PAYMENT = re.compile(r"\b(?:PAY|TRF|TX)[-\s#]?(\d{3,10})\b", re.IGNORECASE)
_CHARGE = re.compile(r"\bCH[-\s#]?(\d{3,10})\b", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CARD_LAST4 = re.compile(
    r"(?:ending(?:\s+in)?|last\s+(?:four|4)(?:\s+digits)?(?:\s+(?:are|is))?|card\s+(?:no\.?\s*)?\*+)"
    r"[\s:#*]*(\d{4})\b",
    re.IGNORECASE,
)
_AMOUNT_SYMBOL = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?!\d)")
_AMOUNT_CODE = re.compile(
    r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?\s?(USD|EUR|GBP|dollars?|euros?|pounds?)\b",
    re.IGNORECASE,
)
_SYMBOL_CURRENCY = {"$": "USD", "€": "EUR", "£": "GBP"}
_WORD_CURRENCY = {"dollar": "USD", "euro": "EUR", "pound": "GBP"}


def _money(whole: str, cents: str | None, currency: str) -> Money | None:
    try:
        amount = Decimal(whole.replace(",", "") + "." + (cents or "0"))
    except InvalidOperation:
        return None
    return Money(amount=amount.quantize(Decimal("0.01")), currency=currency)


def _currency(token: str) -> str:
    low = token.lower().rstrip("s")
    return _WORD_CURRENCY.get(low, token.upper())


@lru_cache(maxsize=4096)
def extract(text: str) -> Entities:
    """Every entity the message names, in the order it names them, without repeats.

    Pure and returning a frozen value, so it is memoised: the layers of one turn ask for the
    same text's entities several times."""
    amounts: list[Money] = []
    for m in _AMOUNT_SYMBOL.finditer(text):
        money = _money(m.group(2), m.group(3), _SYMBOL_CURRENCY[m.group(1)])
        if money is not None:
            amounts.append(money)
    for m in _AMOUNT_CODE.finditer(text):
        money = _money(m.group(1), m.group(2), _currency(m.group(3)))
        if money is not None:
            amounts.append(money)
    return Entities(
        invoice_ids=_unique(f"INV-{n}" for n in _INVOICE.findall(text)),
        payment_ids=_unique(_payment_id(m) for m in _PAYMENT.finditer(text)),
        charge_ids=_unique(f"CH-{n}" for n in _CHARGE.findall(text)),
        amounts=tuple(dict.fromkeys(amounts)),
        emails=_unique(e.lower() for e in _EMAIL.findall(text)),
        card_last4=_unique(_CARD_LAST4.findall(text)),
    )


def _payment_id(m: re.Match[str]) -> str:
    prefix = m.group(0)[:3].upper().rstrip("-# ")
    prefix = "PAY" if prefix.startswith("PA") else prefix
    return f"{prefix}-{m.group(1)}"


def _unique(values: object) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))  # type: ignore[call-overload]

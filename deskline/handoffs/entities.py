"""Entity extraction from a customer's words, driven by the desk's entity types.

An ``EntityType`` names a kind of thing a customer mentions (an order number, an amount, an
email), says how to find and normalise it in text, whether it is personal data, and how to ask
for it. ``Extractor`` runs a desk's types over a message; pure, memoised, ~20 µs a message.

The constructors cover the usual shapes without a regular expression of your own:

    id_entity("order_id", "ORD")            "ord 1001", "ORD-1001", "#ORD1001" -> "ORD-1001"
    money_entity("amount")                   "$49", "49.00 EUR", "12 dollars" -> "49.00 USD"
    email_entity("email")                    lower-cased addresses
    pattern_entity("sku", r"\\bSKU-(\\w+)")   the first group (or a function of the match)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from deskline.handoffs.money import find_amounts
from deskline.handoffs.payload import NAME_PATTERN, Entities, Money, money_value

EntityKind = Literal["id", "money", "text"]


@dataclass(frozen=True, slots=True)
class EntityType:
    """One kind of entity a desk knows.

    ``find(text)`` returns every normalised value in the order the text names them. ``kind``
    tells the framework how to treat it: ``id`` values are references to records (the planner
    may only act on ids the customer named), ``money`` values are amounts the approval limit
    applies to (kept as ``"49.00 USD"``), ``text`` is anything else. ``personal`` marks data
    that logs and exports mask. ``question`` is how the desk asks the customer for it.
    """

    name: str
    find: Callable[[str], Iterable[str]]
    kind: EntityKind = "text"
    personal: bool = False
    question: str = ""
    description: str = ""
    resolve: Callable[[Any, str, str], Iterable[str]] | None = None
    """``resolve(records, customer_id, text)``: the values a message refers to without naming them
    ("my order of the blue lamp", "the open one", "the $75 one"), looked up in the desk's system of
    record for that customer; nothing when the text refers to none."""


def id_entity(name: str, prefix: str, *more_prefixes: str, digits: tuple[int, int] = (3, 10),
              question: str = "", description: str = "", personal: bool = False,
              resolve: Callable[[Any, str, str], Iterable[str]] | None = None) -> EntityType:
    """A record reference written as a prefix and digits: ``ORD-1001``, ``ord 1001``, ``#ORD1001``.

    Each prefix is kept as written in upper case, so ``TRF 12`` stays ``TRF-12`` when ``TRF`` is
    one of the prefixes."""
    prefixes = (prefix, *more_prefixes)
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    # ASCII boundaries, not \b: in "发票INV-1001的" the Han characters are word characters too.
    pattern = re.compile(rf"(?<![A-Za-z0-9])({alternatives})[-\s#]?(\d{{{digits[0]},{digits[1]}}})(?![0-9])",
                         re.IGNORECASE)

    def find(text: str) -> Iterable[str]:
        return (f"{m.group(1).upper()}-{m.group(2)}" for m in pattern.finditer(text))

    return EntityType(name, find, "id", personal, question or f"Could you tell me the {_words(name)}? "
                      f"It starts with {prefix}-.", description or f"a reference like {prefix}-1001", resolve)


def money_entity(name: str = "amount", question: str = "Could you tell me the amount, with its currency?",
                 description: str = "an amount with its currency") -> EntityType:
    """Amounts with a currency (``$49``, ``49.00 EUR``, ``12 dollars``), kept as ``"49.00 USD"``."""
    return EntityType(name, lambda text: map(money_value, find_amounts(text)), "money", False, question, description)


_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


def email_entity(name: str = "email", question: str = "Could you tell me the email address on your account?",
                 description: str = "an email address") -> EntityType:
    """Email addresses, lower-cased; personal data."""
    return EntityType(name, lambda text: (e.lower() for e in _EMAIL.findall(text)), "text", True, question,
                      description)


def pattern_entity(name: str, pattern: str | re.Pattern[str], normalise: Callable[[re.Match[str]], str] | None = None,
                   *, kind: EntityKind = "text", personal: bool = False, question: str = "",
                   description: str = "", flags: int = re.IGNORECASE) -> EntityType:
    """Values matched by ``pattern``: its first group (or the whole match), or ``normalise(match)``."""
    compiled = re.compile(pattern, flags) if isinstance(pattern, str) else pattern

    def value(m: re.Match[str]) -> str:
        if normalise is not None:
            return normalise(m)
        return m.group(1) if compiled.groups else m.group(0)

    return EntityType(name, lambda text: map(value, compiled.finditer(text)), kind, personal,
                      question or f"Could you tell me the {_words(name)}?", description)


def _words(name: str) -> str:
    return name.removesuffix("_id").replace("_", " ") + (" number" if name.endswith("_id") else "")


class Extractor:
    """A desk's entity types run over a message. Pure and returning a frozen value, so it is
    memoised: the layers of one turn ask for the same text's entities several times."""

    def __init__(self, types: Sequence[EntityType]) -> None:
        self.types = tuple(types)
        self.by_name = {t.name: t for t in self.types}
        self.ids = tuple(t.name for t in self.types if t.kind == "id")
        self.money = tuple(t.name for t in self.types if t.kind == "money")
        self.personal = tuple(t.name for t in self.types if t.personal)
        self.extract = lru_cache(maxsize=4096)(self._extract)

    def _extract(self, text: str) -> Entities:
        text = unicodedata.normalize("NFKC", text)  # full-width "ＩＮＶ－１００１" is INV-1001
        values: dict[str, tuple[str, ...]] = {}
        for entity in self.types:
            found = tuple(dict.fromkeys(entity.find(text)))
            if found:
                values[entity.name] = found
        return Entities(values=values) if values else _EMPTY

    def __call__(self, text: str) -> Entities:
        return self.extract(text)

    def amounts(self, entities: Entities) -> tuple[Money, ...]:
        """Every amount among the entities of the desk's money types."""
        return tuple(m for name in self.money for m in entities.money(name))

    def question(self, name: str) -> str:
        entity = self.by_name.get(name)
        return entity.question if entity is not None and entity.question else f"Could you tell me the {_words(name)}?"


_EMPTY = Entities()


def is_name(value: str) -> bool:
    return re.fullmatch(NAME_PATTERN, value) is not None

"""Facts as a customer reads them in their language: amounts, dates and words, through Babel.

Skills state facts the framework's one way (``format_money``: "$49.00", "1,249.00 CAD";
``"March 14, 2025"`` for dates), so the grounding check can find them. A reply in another
language shows them as that language does ("49,00 US$", "14 de marzo de 2025", "2025年3月14日"),
and a fact in words ("paid") as the desk's catalogue translates it. The grounding check reads
every one of those forms back (``deskline.hierarchy.checks``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from deskline.i18n.catalog import Catalog

__all__ = ["language_names", "localise_facts", "localise_value"]

_SYMBOL_CURRENCY = {"$": "USD", "€": "EUR", "£": "GBP"}
# As ``format_money`` writes an amount, and as the desk's skills write a date and a time.
_MONEY = re.compile(r"(?P<symbol>[$€£])(?P<amount>\d{1,3}(?:,\d{3})*(?:\.\d+)?)(?![\d,.]*\d)"
                    r"|(?<![\w.,:])(?P<amount2>\d{1,3}(?:,\d{3})*(?:\.\d+)?) (?P<code>[A-Z]{3})\b")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DATE = re.compile(rf"\b({'|'.join(_MONTHS)}) (\d{{1,2}}), (\d{{4}})(?: at (\d{{2}}:\d{{2}}))?")


def _money(m: re.Match[str], language: str) -> str:
    from babel.numbers import format_currency, is_currency

    raw = m.group("amount") or m.group("amount2")
    currency = _SYMBOL_CURRENCY[m.group("symbol")] if m.group("symbol") else m.group("code")
    if not is_currency(currency):
        return m.group(0)
    try:
        amount = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        return m.group(0)
    return str(format_currency(amount, currency, locale=language))


def _date(m: re.Match[str], language: str) -> str:
    from babel.dates import format_date

    try:
        day = date(int(m.group(3)), _MONTHS.index(m.group(1)) + 1, int(m.group(2)))
    except ValueError:
        return m.group(0)
    shown = str(format_date(day, format="long", locale=language))
    if m.group(4) is None:
        return shown
    return f"{shown} {m.group(4)}" if language.startswith(("zh", "ja", "ko")) else f"{shown}, {m.group(4)}"


@lru_cache(maxsize=8192)
def localise_value(value: str, language: str) -> str:
    """A fact value with its amounts, dates and times as ``language`` writes them ("$49.00" ->
    "49,00 US$", "March 14, 2025 at 09:30" -> "14 de marzo de 2025, 09:30"); the rest as it is."""
    if language == "en" or not any(ch.isdigit() for ch in value):
        return value
    value = _DATE.sub(lambda m: _date(m, language), value)
    return _MONEY.sub(lambda m: _money(m, language), value)


def localise_facts(facts: Mapping[str, str], language: str, catalog: Catalog | None) -> dict[str, str]:
    """Every fact as ``language`` shows it: amounts and dates by Babel, words by the catalogue."""
    shown: dict[str, str] = {}
    for name, value in facts.items():
        if not isinstance(value, str):
            shown[name] = value
            continue
        words = catalog.get(f"fact.{name}", value) if catalog is not None else None
        shown[name] = words if words is not None else localise_value(value, language)
    return shown


@lru_cache(maxsize=64)
def language_names(languages: Sequence[str], locale: str) -> str:
    """"English, Spanish and Chinese", as ``locale`` names them and lists them."""
    from babel import Locale
    from babel.lists import format_list

    where = Locale.parse(locale)
    names = [str(where.languages.get(code, code)) for code in languages]
    return str(format_list(names, locale=locale))

"""Amounts in a customer's words, in English, Spanish or Chinese: "$49", "49,00 €", "1.200 $",
"12 dollars", "49 dólares", "49元", "四十九美元", "US$1,249.00".

The text is NFKC-normalised first (full-width "４９．００" is 49.00). A number's last separator
followed by one or two digits is its decimal point, by three a thousands separator, whichever
character it is ("49,00" and "49.00" are both 49, "1.200" and "1,200" both 1200): the one
reading that holds for English, Spanish and Chinese writing alike. Chinese numerals are read
up to the tens of thousands (四十九, 一千二百, 两百五十, 三点五).
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from deskline.handoffs.payload import Money

__all__ = ["chinese_number", "find_amounts", "parse_number"]

_NUMBER = r"\d{1,3}(?:[.,\s]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
# Longest first: "US$" before "$", "dólares" before "dólar".
_CURRENCIES: dict[str, str] = {
    "us$": "USD", "ca$": "CAD", "a$": "AUD", "$": "USD", "€": "EUR", "£": "GBP", "¥": "CNY", "￥": "CNY",
    "usd": "USD", "eur": "EUR", "gbp": "GBP", "cad": "CAD", "cny": "CNY", "rmb": "CNY",
    "dollars": "USD", "dollar": "USD", "euros": "EUR", "euro": "EUR", "pounds": "GBP", "pound": "GBP",
    "dólares": "USD", "dolares": "USD", "dólar": "USD", "dolar": "USD", "libras": "GBP", "libra": "GBP",
    "美元": "USD", "美金": "USD", "刀": "USD", "欧元": "EUR", "英镑": "GBP", "人民币": "CNY", "元": "CNY",
    "块钱": "CNY", "块": "CNY",
}
_SYMBOLS = ("us$", "ca$", "a$", "$", "€", "£", "¥", "￥")
_WORDS = sorted((k for k in _CURRENCIES if k not in _SYMBOLS), key=len, reverse=True)
_BEFORE = "|".join(re.escape(s) for s in _SYMBOLS)
_AFTER = "|".join(re.escape(s) for s in (*_SYMBOLS, *_WORDS))
_LATIN_WORD = re.compile(r"[a-zá-ú]")
# An amount starts with a digit or a symbol's first character: looked ahead for first, so the
# scan skips every other position at once (it halves the time over a reply).
_STARTS = "".join(sorted({re.escape(s[0]) for s in _SYMBOLS}))
_AMOUNT = re.compile(
    rf"(?=[\d{_STARTS}])(?:(?P<pre>{_BEFORE})\s?(?P<n1>{_NUMBER})(?![\d])"
    rf"|(?<![\w.,-])(?P<n2>{_NUMBER})\s?(?P<post>{_AFTER})(?!\s?\d))",  # "2025 $34.50": the $ is 34.50's
    re.IGNORECASE,
)
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4,
              "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
_CN_NUMBER = "[零〇一二两三四五六七八九十百千万]+(?:点[零〇一二三四五六七八九]+)?"
_CN_AMOUNT = re.compile(rf"(?P<n>{_CN_NUMBER})\s?(?P<post>美元|美金|欧元|英镑|人民币|块钱|块|元|刀)")


def parse_number(text: str) -> Decimal | None:
    """A written number: the last separator is decimal before one or two digits, else grouping."""
    text = re.sub(r"\s", "", text)
    m = re.search(r"[.,](\d{1,2})$", text)
    whole, cents = (text[: m.start()], m.group(1)) if m else (text, "")
    whole = re.sub(r"[.,]", "", whole)
    try:
        return Decimal(f"{whole}.{cents or '0'}")
    except InvalidOperation:
        return None


def chinese_number(text: str) -> Decimal | None:
    """四十九 -> 49, 一千二百 -> 1200, 两百五 -> 250, 三点五 -> 3.5 (None if not a number)."""
    whole, _, fraction = text.partition("点")
    total = section = digit = 0
    last_unit = 1
    seen = False
    for ch in whole:
        if ch in _CN_DIGITS:
            digit, seen = _CN_DIGITS[ch], True
        elif ch in _CN_UNITS:
            unit = _CN_UNITS[ch]
            if unit == 10000:
                total += ((section + digit) or 1) * unit
                section = digit = 0
            else:
                section += (digit or (1 if unit == 10 else 0)) * unit
                digit = 0
            last_unit, seen = unit, True
        else:
            return None
    if not seen:
        return None
    if digit and last_unit >= 100 and len(whole) >= 2 and whole[-2] in _CN_UNITS:
        digit *= last_unit // 10  # 两百五 is 250, 一千二 is 1200
    value = Decimal(total + section + digit)
    if fraction:
        if any(ch not in _CN_DIGITS for ch in fraction):
            return None
        value += Decimal("0." + "".join(str(_CN_DIGITS[ch]) for ch in fraction))
    return value


def _money(amount: Decimal | None, currency: str) -> Money | None:
    if amount is None:
        return None
    return Money(amount=amount.quantize(Decimal("0.01")), currency=currency)


def find_amounts(text: str) -> list[Money]:
    """Every amount written with a currency symbol, code or word, in the order written."""
    text = unicodedata.normalize("NFKC", text)
    found: list[tuple[int, Money]] = []
    for m in _AMOUNT.finditer(text):
        token = (m.group("pre") or m.group("post")).lower()
        if m.group("post") and _LATIN_WORD.match(token):
            end = m.end("post")
            if end < len(text) and (text[end].isalnum() and text[end].isascii()):
                continue  # "12 dollarsign", "49 euroland": not a currency word
        money = _money(parse_number(m.group("n1") or m.group("n2")), _CURRENCIES[token])
        if money is not None:
            found.append((m.start(), money))
    for m in _CN_AMOUNT.finditer(text):
        money = _money(chinese_number(m.group("n")), _CURRENCIES[m.group("post")])
        if money is not None:
            found.append((m.start(), money))
    return [money for _, money in sorted(found, key=lambda pair: pair[0])]

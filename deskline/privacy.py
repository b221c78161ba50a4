"""Personal data out of what leaves the desk, and invisible tricks out of what comes in.

* ``mask(text)`` hides card numbers, IBANs, US social security numbers, email addresses and
  phone numbers, keeping a hint a person can check against (``**** **** **** 1111``,
  ``GB** **** **** 5432``, ``***-**-6789``, ``j***@example.com``, ``***-***-23``). Logs, query
  exports, eval reports and the human queue's summary lines go through it. Desk references and
  amounts (``INV-1001``, ``ORD-1002``, ``$1,200.00``, ``2025-03-14``, ``09:30 UTC``) survive.
* ``normalise_text(text)`` is what the desk reads a customer message as: NFKC (full-width
  ``１００３`` is ``1003``), without bidi controls and zero-width characters.
* ``has_control(value)`` says whether a value carries C0/C1 control characters (ids, keys).

Pure and cheap: a text with no run of seven digits and no ``@`` (most log lines) costs one
regular-expression search; ``phonenumbers`` is imported on the first text that may hold a phone.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

__all__ = ["has_control", "mask", "normalise_text"]

# Characters that may stand between the digits of a card number: whitespace (NBSP and the other
# Unicode spaces are ``\s``), dashes, slashes, dots, and the invisible characters a raw message
# (not yet through ``normalise_text``) may hide between them.
_INVISIBLE = "\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_DASH = "\\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d"
_SEP = rf"[\s{_DASH}/\uff0f.\u00b7\u2027\uff0e{_INVISIBLE}]"
# Phone numbers add brackets, tildes and a plus sign to those.
_PHONE_SEP = (rf"[\s{_DASH}/\uff0f.\u00b7\u2027\uff0e()\uff08\uff09\[\]\uff3b\uff3d~\u2053\u223c\uff5e+\uff0b"
              rf"{_INVISIBLE}]")

# The gate: a card, IBAN, SSN or phone number has seven digits in a run (separators allowed).
_DIGITS7 = re.compile(rf"\d(?:{_PHONE_SEP}{{0,4}}\d){{6}}")
_DIGIT_RUN = re.compile(rf"(?<!\w)\d(?:{_SEP}{{0,3}}\d)*")
_DIGIT_GROUP = re.compile(r"\d+")
_NOT_DIGIT = re.compile(r"\D+")
# Dates and times, which the gate looks past: 2025-03-14, 14/03/2025, 2025-03-14T09:30:00, 09:30.
_DATE_TIME = re.compile(r"\d(?<![\d./-]\d)(?:\d{3}([-/.])\d\d?\1\d\d?(?:[T ]\d\d?:\d\d(?::\d\d(?:\.\d+)?)?)?"
                        r"|\d?([-/.])\d\d?\2\d{2,4}|\d?:\d\d(?::\d\d(?:\.\d+)?)?)(?![\d./-]?\d)")
# Area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"[0-8](?<![\w-][0-8])[0-9]{2}(?<!000)(?<!666)([- \u00a0])(?!00)[0-9]{2}\1(?!0000)([0-9]{4})"
                  r"(?![\w-])")
# Parts bounded by their RFC 5321 limits, so a long word before an "@" costs no backtracking.
_EMAIL = re.compile(r"\b([\w.+-])[\w.+-]{0,63}@([\w-]{1,63}(?:\.[\w-]{1,63})+)\b")
_IBAN_START = re.compile(r"(?<![0-9A-Za-z])([A-Za-z]{2})[0-9]{2}(?=[ \u00a0]?[0-9A-Za-z])")
_CURRENCY_BEFORE = re.compile(r"[$€£¥]\s?$")
_CURRENCY_AFTER = re.compile(r"\s?(?:USD|EUR|GBP|JPY|CHF|CAD|AUD|dollars?|euros?|pounds?)\b", re.IGNORECASE)
_DECIMAL_BEFORE = re.compile(r"\d[.,]$")
_DECIMAL_AFTER = re.compile(r"[.,]\d")

# IBAN length by country (ISO 13616 registry).
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

# Always removed: bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), the
# bidi marks (U+200E, U+200F, U+061C), zero-width space, word joiner and BOM (U+200B, U+2060,
# U+FEFF), the invisible operators (U+2061-U+2064), soft hyphen, Mongolian vowel separator and
# the tag characters (U+E0000-U+E007F, invisible ASCII a model still reads).
_INVISIBLE_ALWAYS = re.compile("[\u00ad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
                               "\ufeff\U000e0000-\U000e007f]")
# ZWNJ and ZWJ are kept only between two non-ASCII visible characters: inside emoji sequences
# (👩‍💻) and in the scripts whose spelling needs them (Persian, the Indic scripts). Next to an
# ASCII character, a space or the start or end of the text they can only hide something.
_JOINER = re.compile("(?<![^\\x00-\\x9f\\s\u200c\u200d])[\u200c\u200d]|[\u200c\u200d](?![^\\x00-\\x9f\\s\u200c\u200d])")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# The digits a mask keeps are written as noncharacters (U+FDD0 to U+FDD9) until the phone rule
# has run, so it cannot read "**** **** **** 1111 2025-03-14" as a phone number.
_KEEP = str.maketrans({str(d): chr(0xFDD0 + d) for d in range(10)})
_UNKEPT = tuple((chr(0xFDD0 + d), str(d)) for d in range(10))
_NONCHARACTER = re.compile("[\ufdd0-\ufdef]")

_phone_matcher: Any = None


def mask(text: str) -> str:
    """``text`` with card numbers, IBANs, US SSNs, emails and phone numbers masked, a hint kept."""
    if "@" in text:
        text = _EMAIL.sub(_mask_email, text)
    if _DIGITS7.search(text) is None or _DIGITS7.search(_DATE_TIME.sub("x", text)) is None:
        return text  # no run of 7 digits but dates and times: no card, IBAN, SSN or phone number
    if _NONCHARACTER.search(text):  # not for interchange; here they would read as kept digits
        text = _NONCHARACTER.sub("\ufffd", text)
    text = _mask_ibans(text)
    text = _DIGIT_RUN.sub(_mask_card_run, text)
    text = _SSN.sub(_mask_ssn, text)
    if _DIGITS7.search(_DATE_TIME.sub("x", text)) is not None:
        text = _mask_phones(text)
    for kept, digit in _UNKEPT:
        if kept in text:
            text = text.replace(kept, digit)
    return text


def normalise_text(text: str) -> str:
    """``text`` as the desk reads it: NFKC (full-width digits and letters as ASCII, NBSP as a
    space), without bidi controls or invisible characters; ZWJ and ZWNJ only where they join
    two non-ASCII characters (emoji sequences, Persian and Indic spelling)."""
    if text.isascii():  # nothing to normalise or remove
        return text
    text = _INVISIBLE_ALWAYS.sub("", unicodedata.normalize("NFKC", text))
    return _JOINER.sub("", text) if "\u200c" in text or "\u200d" in text else text


def has_control(value: str) -> bool:
    """Whether ``value`` holds a C0 control (NUL to U+001F, tab and newline included), DEL or a
    C1 control (U+0080 to U+009F)."""
    return _CONTROL.search(value) is not None


# --- the rules ---------------------------------------------------------------------------------


def _kept(shown: str) -> str:
    """The characters a mask shows, digits in their stand-in form (see ``_UNKEPT``)."""
    if not shown.isascii():
        shown = "".join(str(int(ch)) if ch.isdecimal() else ch for ch in shown)
    return shown.translate(_KEEP)


def _mask_ssn(m: re.Match[str]) -> str:
    return "***-**-" + _kept(m.group(2))


def _mask_email(m: re.Match[str]) -> str:
    return f"{m.group(1)}***@{m.group(2)}"


def _mask_ibans(text: str) -> str:
    """Every IBAN (its country's length, letters and digits with single spaces between, passing
    the mod-97 check) as its country code and last four characters."""
    out: list[str] = []
    done = 0  # text[:done] is decided
    for m in _IBAN_START.finditer(text):
        start = m.start()
        length = _IBAN_LENGTH.get(m.group(1).upper())
        if start < done or length is None:
            continue
        chars: list[str] = []
        i = start
        while i < len(text) and len(chars) < length:
            ch = text[i]
            if ch.isascii() and ch.isalnum():
                chars.append(ch)
            elif not (ch in " \u00a0" and chars and i + 1 < len(text) and text[i + 1].isalnum()):
                break
            i += 1
        if len(chars) < length or (i < len(text) and text[i].isalnum()):  # short, or more glued on
            continue
        compact = "".join(chars).upper()
        if _mod97(compact):
            out.append(text[done:start])
            out.append(f"{compact[:2]}** **** **** {_kept(compact[-4:])}")
            done = i
    if not done:
        return text
    out.append(text[done:])
    return "".join(out)


def _mod97(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn(digits: str) -> bool:
    backwards = digits[::-1]
    return (sum(map(int, backwards[0::2])) + sum(_DOUBLED[int(ch)] for ch in backwards[1::2])) % 10 == 0


def _card_like(groups: list[tuple[int, int]]) -> bool:
    """One group of digits, or groups of 3 to 6 as cards are printed (4-4-4-4, 4-6-5, 4-4-4-4-3);
    not ``1700000000.123456``."""
    return len(groups) == 1 or all(3 <= e - s <= 6 for s, e in groups)


def _mask_card_run(m: re.Match[str]) -> str:
    """A run of digit groups: the card number in it (13 to 19 digits passing the Luhn check,
    the whole run or the longest run of whole groups that is one) masked."""
    run = m.group(0)
    digits = _NOT_DIGIT.sub("", run)
    if len(digits) < 13:
        return run
    if _glued(m.string, m.start(), m.end()):  # part of an id: INV-4111..., a UUID
        return run
    groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(run)]
    if len(digits) <= 19 and _card_like(groups) and _luhn(digits):
        return "**** **** **** " + _kept(digits[-4:])
    out: list[str] = []
    done = 0  # run[:done] is decided
    i = 0
    while i < len(groups):
        found, count, card_like = -1, 0, True
        for j in range(i, len(groups)):  # the longest card starting at group i
            s, e = groups[j]
            count += e - s
            card_like = card_like and 3 <= e - s <= 6
            if count > 19:
                break
            if count >= 13 and (j == i or card_like) and _luhn("".join(run[a:b] for a, b in groups[i:j + 1])):
                found = j
        if found < 0:
            i += 1
            continue
        digits = "".join(run[a:b] for a, b in groups[i:found + 1])
        out.append(run[done:groups[i][0]])
        out.append("**** **** **** " + _kept(digits[-4:]))
        done = groups[found][1]
        i = found + 1
    if not done:
        return run
    out.append(run[done:])
    return "".join(out)


def _glued(text: str, start: int, end: int, before: bool = True) -> bool:
    """Whether ``text[start:end]`` is part of a longer token: a letter, digit or underscore
    touches it, or a dash joins it to one (``INV-1001``, ``13782455-cd59-...``); ``before=False``
    looks at its end only."""
    ahead, after = text[max(0, start - 2):start] if before else "", text[end:end + 2]
    if ahead:
        last = ahead[-1]
        if last.isalnum() or last == "_" or (last == "-" and len(ahead) == 2 and ahead[0].isalnum()):
            return True
    if after:
        first = after[0]
        if first.isalnum() or first == "_" or (first == "-" and len(after) == 2 and after[1].isalnum()):
            return True
    return False


def _mask_phones(text: str) -> str:
    global _phone_matcher
    if _phone_matcher is None:
        from phonenumbers import Leniency, PhoneNumberMatcher

        def find(value: str) -> Any:
            # POSSIBLE: the right length for the region, so "+1 555 0100" and "555-0199" count.
            return PhoneNumberMatcher(value, "US", leniency=Leniency.POSSIBLE)

        _phone_matcher = find
    spans: list[tuple[int, int, str]] = []
    for match in _phone_matcher(text):
        start, end, raw = match.start, match.end, match.raw_string
        if _glued(text, start, end, before=raw[0].isalnum()):  # "(415) ..." may follow a word
            continue  # part of an id: c_0123456789, PAY-3001234567, a UUID
        if _DECIMAL_BEFORE.search(text, 0, start) or _DECIMAL_AFTER.match(text, end):
            continue  # a decimal number: 0.0012345, 1234567.89, 1 234 567,00
        if _CURRENCY_BEFORE.search(text, 0, start) or _CURRENCY_AFTER.match(text, end):
            continue  # an amount: $1200000, 1200000 USD
        digits = [str(int(ch)) for ch in raw if ch.isdecimal()]
        if not 7 <= len(digits) <= 15 or (raw.isdecimal() and len(digits) < 10):
            continue  # a bare number of 7 to 9 digits is a count or a reference more often than a phone
        national = str(match.number.national_number) or "".join(digits)  # without an extension
        spans.append((start, end, "***-***-" + national[-2:]))
    for start, end, masked in reversed(spans):
        text = text[:start] + masked + text[end:]
    return text

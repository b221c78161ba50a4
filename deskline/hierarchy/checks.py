"""Checks on a reply before a customer reads it: grounded in the results, and not junk.

``ungrounded`` compares every id, amount, date and time in a reply with those in the results'
facts (and the ids and amounts the customer wrote), token by token after normalising formats:
"INV-100" is not INV-1001, "$4" is not $49.00, "3/15/2025" is March 15, 2025, "09:30 UTC" is not
"17:56 UTC", and a date broken over a line is still a date. ``junk`` finds what a model's reply
must never carry: role labels, markup and special tokens, HTML entities, JSON, template
placeholders, the prompt's own words, or a reply that drops the facts the draft states.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal

from deskline.handoffs.money import find_amounts
from deskline.handoffs.payload import AgentResult

_ID = re.compile(r"(?<![A-Za-z0-9])[A-Z]{1,5}-\d{2,}(?![0-9])")  # ASCII bounds: "发票INV-1001已"
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december)"
# Each form's first character is looked ahead for first (a month's initial, a digit): the scan
# then skips every other position at once, about twice as fast over a reply.
_DATE_MDY = re.compile(rf"(?=[adfjmnos])\b{_MONTH}\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.IGNORECASE)
_DATE_DMY = re.compile(rf"(?=\d)\b(\d{{1,2}})\s+{_MONTH},?\s+(\d{{4}})\b", re.IGNORECASE)
_DATE_ISO = re.compile(r"(?=\d)\b(\d{4})-(\d{2})-(\d{2})\b")
_DATE_SLASH = re.compile(r"(?=\d)\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_MESES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
          "noviembre", "diciembre")
_DATE_ES = re.compile(rf"(?=\d)\b(\d{{1,2}})\s+de\s+({'|'.join(_MESES)}|setiembre)\s+de(?:l)?\s+(\d{{4}})\b",
                      re.IGNORECASE)
_DATE_CJK = re.compile(r"(?=\d)(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
_YEAR = re.compile(r"\d{4}")
_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")

_ROLE = re.compile(r"(?im)^\s*(?:customer|assistant|user|system|agent|human|ai|bot|desk)\s*:")
_MARKUP = re.compile(r"<\|[^|>]{0,40}\|>|</?[a-z][a-z0-9]*(?:\s[^>]*)?>|```|\[/?INST\]|<s>|</s>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#\d{1,6}|#x[0-9a-f]{1,6}|[a-z]{2,8});", re.IGNORECASE)
_JSON = re.compile(r"[{\[]\s*\"[^\"\n]{1,60}\"\s*:")
_PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*\}")
SHINGLE = 6  # words: a reply repeating this many consecutive words of its prompt is echoing it
# What a customer never reads from a desk: the machinery's own words (the prompts forbid them)
# and identifiers with underscores or dots between words (skill names, event fields).
_INTERNAL = re.compile(
    r"\b(?:drafts?|tools?|tool calls?|function calls?|json|skills?|facts?|system prompt|instructions?|"
    r"as an ai|language model|plan_execution|ask_customer)\b|\b[a-z]+_[a-z0-9_]+\b|\b[a-z]+\.[a-z]+_[a-z_]+\b",
    re.IGNORECASE)
_REPEATED_WORD = re.compile(r"\b(\w+)(?:\W+\1\b){3,}", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"')]+", re.IGNORECASE)
MAX_SENTENCES, MAX_CHARS = 5, 700  # the writer is asked for at most 4 sentences


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))


def ids_in(text: str) -> set[str]:
    return set(_ID.findall(text))


def amounts_in(text: str) -> set[tuple[Decimal, str]]:
    return {(m.amount, m.currency) for m in find_amounts(_squash(text))}


def dates_in(text: str) -> set[date]:
    """Every date written as "March 14, 2025", "14 March 2025", "2025-03-14", "3/14/2025",
    "14 de marzo de 2025" or "2025年3月14日"."""
    text = _squash(text)
    found: set[date] = set()
    if not _YEAR.search(text):  # every form has a year of four digits
        return found
    for m in _DATE_MDY.finditer(text):
        found.update(_date(int(m.group(3)), _MONTHS.index(m.group(1).lower()) + 1, int(m.group(2))))
    for m in _DATE_DMY.finditer(text):
        found.update(_date(int(m.group(3)), _MONTHS.index(m.group(2).lower()) + 1, int(m.group(1))))
    for m in _DATE_ISO.finditer(text):
        found.update(_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for m in _DATE_ES.finditer(text):  # "14 de marzo de 2025"
        month = m.group(2).lower()
        found.update(_date(int(m.group(3)), 9 if month == "setiembre" else _MESES.index(month) + 1, int(m.group(1))))
    for m in _DATE_CJK.finditer(text):  # "2025年3月14日"
        found.update(_date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for m in _DATE_SLASH.finditer(text):  # month first, as the desk's customers in the US write it
        found.update(_date(int(m.group(3)), int(m.group(1)), int(m.group(2))))
    return found


def times_in(text: str) -> set[tuple[int, int]]:
    return {(int(h), int(m)) for h, m in _TIME.findall(text)}


def _date(year: int, month: int, day: int) -> tuple[date, ...]:
    try:
        return (date(year, month, day),)
    except ValueError:
        return ()


def ungrounded(text: str, results: Iterable[AgentResult], said: str = "") -> list[str]:
    """Every id, amount, date and time in ``text`` that no result holds (ids and amounts the
    customer wrote count as held), as it was written in the reply."""
    facts = " ".join(v for r in results for v in r.facts.values())
    known_ids, known_amounts = ids_in(facts) | ids_in(said), amounts_in(facts) | amounts_in(said)
    known_dates, known_times = dates_in(facts), times_in(facts)
    squashed = _squash(text)
    problems = [i for i in _ID.findall(squashed) if i not in known_ids]
    problems += [str(m) for m in find_amounts(squashed) if (m.amount, m.currency) not in known_amounts]
    problems += [d.isoformat() for d in sorted(dates_in(squashed) - known_dates)]
    problems += [f"{h:02d}:{m:02d}" for h, m in sorted(times_in(squashed) - known_times)]
    return list(dict.fromkeys(problems))


def junk(reply: str, draft: str, prompts: Sequence[str] = ()) -> list[str]:
    """Why a model's reply cannot be sent, if it cannot (empty when it can)."""
    problems = []
    if not reply.strip():
        return ["the reply is empty"]
    for pattern, what in ((_ROLE, "a role label"), (_MARKUP, "markup or a special token"),
                          (_ENTITY, "an HTML entity"), (_JSON, "JSON"), (_PLACEHOLDER, "a template placeholder")):
        if pattern.search(reply):
            problems.append(f"the reply contains {what}")
    words = re.findall(r"\w+", reply.lower())
    shingles = {" ".join(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}
    for prompt in prompts:
        pw = re.findall(r"\w+", prompt.lower())
        if any(" ".join(pw[i:i + SHINGLE]) in shingles for i in range(len(pw) - SHINGLE + 1)):
            problems.append("the reply repeats its instructions")
            break
    lost = (ids_in(draft) - ids_in(reply)) | {f"{amount} {currency}" for amount, currency in
                                              amounts_in(draft) - amounts_in(reply)} \
        | {d.isoformat() for d in dates_in(draft) - dates_in(reply)} \
        | {f"{h:02d}:{m:02d}" for h, m in times_in(draft) - times_in(reply)}
    if lost:
        problems.append(f"the reply drops facts the draft states: {', '.join(sorted(map(str, lost)))}")
    if len(reply) > 4 * len(draft) + 300:
        problems.append("the reply is far longer than the draft")
    return problems


def unsupported(reply: str, results: Iterable[AgentResult], draft: str = "", said: str = "") -> list[str]:
    """What a model-written ``reply`` states or does that nothing it was given supports: a
    number, an email address or a web address found in none of the results' facts, the draft
    and the customer's message; the desk's internal words; a word or phrase repeated over and
    over; more than a short reply's length."""
    sources = _squash(" ".join([*(v for r in results for v in r.facts.values()), draft, said]))
    text = _squash(reply)
    problems = []
    numbers = {int(n) for n in _NUMBER.findall(sources)}
    extra = [n for n in _NUMBER.findall(text) if int(n) not in numbers]
    if extra:
        problems.append(f"numbers nothing it was given holds: {', '.join(dict.fromkeys(extra))}")
    lowered = sources.lower()
    for pattern, what in ((_EMAIL, "email address"), (_URL, "web address")):
        invented = [m for m in pattern.findall(text) if m.lower().rstrip(".,;:") not in lowered]
        if invented:
            problems.append(f"an {what} nothing it was given holds: {', '.join(invented)}")
    internal = _INTERNAL.search(text)
    if internal:
        problems.append(f"the desk's internal words ({internal.group(0)!r})")
    words = re.findall(r"\w+", text.lower())
    trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
    if _REPEATED_WORD.search(text) or (trigrams and trigrams.most_common(1)[0][1] >= 3):
        problems.append("a word or phrase repeated over and over")
    if len(re.findall(r"[.!?。！？]+(?:\s|$)", text)) > MAX_SENTENCES or len(text) > MAX_CHARS:
        problems.append(f"longer than {MAX_SENTENCES} sentences or {MAX_CHARS} characters")
    return problems


def model_text_problems(reply: str, results: Sequence[AgentResult], *, draft: str = "", said: str = "",
                        prompts: Sequence[str] = ()) -> list[str]:
    """Every reason a model-written text (a reply, or the planner's question) cannot reach the
    customer: ungrounded facts, junk, and anything ``unsupported`` finds. Empty: it may be sent
    (the caller still checks its language)."""
    problems = [f"the reply states facts no result holds: {', '.join(found)}"
                for found in [ungrounded(reply, results, said=said)] if found]
    return problems + junk(reply, draft, prompts) + unsupported(reply, results, draft, said)


def question_problems(question: str, said: str, prompts: Sequence[str] = ()) -> list[str]:
    """Every reason the planner's question to the customer cannot be sent: those of any model
    text (only the customer's own words count as given), and it must be one short question,
    ending with its question mark (not a form's "Name (optional):")."""
    problems = model_text_problems(question, [], said=said, prompts=prompts)
    stripped = question.strip()
    if not stripped.endswith(("?", "？")):
        problems.append("not a question (it does not end with a question mark)")
    if len(re.findall(r"[.!?。！？]+(?:\s|$)", stripped)) > 2 or len(stripped) > 300:
        problems.append("longer than a short question")
    return problems

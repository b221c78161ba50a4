"""A desk's words in each language it answers in: gettext catalogues read with Babel.

The desk is written in its default language (its ``Texts``, its skills' templates, its entity
questions and escalation replies). Every other language it declares has a catalogue, a ``.po``
file named for the language (``es.po``, ``zh.po``) in the desk's ``catalogs`` folder. Each
message is found by a context naming where the words are used, and its English text:

    msgctxt "text.clarify"                     a field of ``Texts``
    msgctxt "template.billing.invoice.invoice" skill ``billing.invoice``'s template ``invoice``
    msgctxt "question.invoice_id"              how the desk asks for an entity
    msgctxt "escalation.fraud"                 an escalation rule's reply
    msgctxt "fact.invoice_status"              a fact value in words ("paid"), added by hand

``deskline catalog extract`` writes the template (``.pot``) of everything to translate;
``messages`` lists it, ``missing`` what a catalogue lacks or gets wrong (a translation that
drops or invents a ``{placeholder}``). A message whose English changed is missing again, as
gettext would have it: its old translation no longer says the same thing.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deskline.definition.model import Desk

__all__ = ["Catalog", "CatalogError", "Message", "messages", "missing", "read_catalog", "write_template"]

_LANGUAGE = re.compile(r"^[a-z]{2,3}(?:_[A-Za-z0-9]{2,8})?$")


class CatalogError(ValueError):
    """A catalogue that cannot be read."""


@dataclass(frozen=True, slots=True)
class Message:
    """One text to translate: where it is used (``context``) and its words in the desk's language."""

    context: str
    text: str


def messages(desk: Desk) -> list[Message]:
    """Every text the desk may say, in its default language, in a stable order."""
    found: list[Message] = []
    for texts_field in dataclasses.fields(desk.texts):
        value = getattr(desk.texts, texts_field.name)
        if isinstance(value, str) and value:
            found.append(Message(f"text.{texts_field.name}", value))
    for skill in desk.skills:
        for name, text in skill.templates.items():
            found.append(Message(f"template.{skill.name}.{name}", text))
    for entity in desk.entities:
        if entity.question:
            found.append(Message(f"question.{entity.name}", entity.question))
    for rule in desk.policies.escalations:
        if rule.reply:
            found.append(Message(f"escalation.{rule.name}", rule.reply))
    return found


@dataclass(frozen=True)
class Catalog:
    """One language's translations: ``(context, English) -> translation``."""

    language: str
    translations: Mapping[tuple[str, str], str]

    def get(self, context: str, text: str) -> str | None:
        return self.translations.get((context, text))

    def __call__(self, context: str, text: str) -> str:
        """The translation, or ``text`` itself when the catalogue has none."""
        return self.translations.get((context, text)) or text

    def facts(self, name: str) -> Mapping[str, str]:
        """The translated values of fact ``name`` (``fact.<name>`` messages)."""
        context = f"fact.{name}"
        return {msgid: msgstr for (ctx, msgid), msgstr in self.translations.items() if ctx == context}


def read_catalog(path: str | Path, language: str | None = None) -> Catalog:
    """The ``.po`` file at ``path`` (fuzzy and untranslated entries are left out)."""
    from babel.messages.pofile import read_po

    path = Path(path)
    language = language or path.stem
    if not _LANGUAGE.match(language):
        raise CatalogError(f"{path}: {language!r} is not a language code (like 'es' or 'zh')")
    try:
        with path.open("rb") as handle:
            catalog = read_po(handle, locale=language, abort_invalid=True)
    except OSError as exc:
        raise CatalogError(f"{path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # babel's PoFileError and friends
        raise CatalogError(f"{path}: not a readable .po file ({exc})") from exc
    translations: dict[tuple[str, str], str] = {}
    for message in catalog:
        if not message.id or message.fuzzy or not isinstance(message.id, str):
            continue
        if isinstance(message.string, str) and message.string:
            translations[(message.context or "", message.id)] = message.string
    return Catalog(language, translations)


def placeholders(text: str) -> set[str]:
    """The ``{names}`` a text formats."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError:
        return {"<unbalanced braces>"}


def missing(desk: Desk, catalog: Catalog) -> Iterator[str]:
    """What ``catalog`` lacks for ``desk``, or translates with other placeholders."""
    for message in messages(desk):
        translated = catalog.get(message.context, message.text)
        if translated is None:
            yield f"{catalog.language}: no translation of {message.context}"
            continue
        want, got = placeholders(message.text), placeholders(translated)
        if want != got:
            yield (f"{catalog.language}: {message.context} formats {sorted(got)} where the original formats "
                   f"{sorted(want)}")


def write_template(desk: Desk, out: Path, keep: Iterable[Catalog] = ()) -> int:
    """Write the desk's messages as a ``.pot`` (or, with ``keep``, a ``.po`` keeping what it
    already translates). Returns how many messages it wrote."""
    from babel.messages.catalog import Catalog as BabelCatalog
    from babel.messages.pofile import write_po

    kept = next(iter(keep), None)
    babel = BabelCatalog(locale=kept.language if kept else None, project=desk.name, fuzzy=False)
    found = messages(desk)
    for message in found:
        babel.add(message.text, kept.get(message.context, message.text) or "" if kept else "",
                  context=message.context)
    if kept is not None:
        for (context, text), translated in kept.translations.items():
            if context.startswith("fact."):
                babel.add(text, translated, context=context)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        write_po(handle, babel, width=100, omit_header=False, sort_output=False)
    return len(found)

"""``deskline init``: a small, working desk project to start a team's own desk from.

The project is the plain files under ``template/`` (an online shop's desk: its ``Desk``, a
SQLite system of record, routing examples and the router trained on them, evals, tests and a
README), copied as they are. Nothing in deskline imports the template's code; it is data: its
Python files are named ``*.py-tpl`` (``.py`` once copied), so that no tool treats them as part of
deskline (mypy would check them as ``deskline.scaffold.template...`` and fail on ``import
shop_desk``; setuptools would install them as packages; pip would byte-compile them), and
``gitignore`` becomes ``.gitignore``.

The template's router is reproducible from its examples, byte for byte (the repository's
tests check it); after changing ``template/data/examples.csv``, rebuild it from the template
folder with ``deskline train data/examples.csv --out shop_desk/router.bin``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from deskline.errors import DesklineError

__all__ = ["TEMPLATE", "ScaffoldError", "Written", "create", "project_name", "template_files"]

TEMPLATE = "template"
RENAMED = {"gitignore": ".gitignore"}  # a dot file is not matched by the package-data glob
CODE_SUFFIX = ".py-tpl"  # becomes .py in the project
SKIPPED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".db", ".db-journal")


class ScaffoldError(DesklineError):
    """The project cannot be written where asked; nothing was written."""

    code = "scaffold_error"


@dataclass(frozen=True, slots=True)
class Written:
    """What ``create`` did: the project folder and the files it wrote, relative to it."""

    directory: Path
    files: tuple[str, ...]


def template_files() -> dict[str, Traversable]:
    """The template's files by their path in the new project (``shop_desk/desk.py``...), sorted."""
    found: dict[str, Traversable] = {}

    def walk(node: Traversable, prefix: tuple[str, ...]) -> None:
        for child in node.iterdir():
            if child.is_dir():
                if child.name not in SKIPPED_DIRS:
                    walk(child, (*prefix, child.name))
            elif not child.name.endswith(SKIPPED_SUFFIXES):
                found["/".join((*prefix, project_name(child.name)))] = child

    walk(files(__package__) / TEMPLATE, ())
    return dict(sorted(found.items()))


def project_name(name: str) -> str:
    """A template file's name in the project: ``desk.py-tpl`` -> ``desk.py``, ``gitignore`` -> ``.gitignore``."""
    if name in RENAMED:
        return RENAMED[name]
    return name.removesuffix(CODE_SUFFIX) + ".py" if name.endswith(CODE_SUFFIX) else name


def create(directory: Path, *, force: bool = False) -> Written:
    """Write the project into ``directory`` (created if missing).

    Raises ``ScaffoldError`` before writing anything when ``directory`` is a file, or is a folder
    that is not empty and ``force`` is false. With ``force`` the template's files overwrite
    files of the same name; other files in the folder are left alone.
    """
    if directory.exists() and not directory.is_dir():
        raise ScaffoldError(f"{directory} exists and is not a folder", directory=str(directory))
    if directory.is_dir() and not force and any(directory.iterdir()):
        raise ScaffoldError(
            f"{directory} is not empty; choose a new or empty folder, or pass --force to overwrite "
            f"the files the template writes",
            directory=str(directory),
        )
    sources = template_files()
    for name in sources:
        target = directory.joinpath(*name.split("/"))
        if target.is_dir():
            raise ScaffoldError(f"{target} is a folder where the template writes a file", directory=str(directory))
    for name, source in sources.items():
        target = directory.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return Written(directory, tuple(sources))

"""``deskline init``: the project it writes, its refusal to overwrite, and its reproducible router."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deskline.cli import app
from deskline.scaffold import create, template_files

TEMPLATE = Path(__file__).resolve().parents[1] / "deskline" / "scaffold" / "template"


def init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["init", *args])
    return result.exit_code, result.output


@pytest.mark.slow
def test_the_project_written_by_init_passes_its_own_tests(tmp_path: Path) -> None:
    """``deskline init`` writes a project whose own ``python -m pytest`` passes, as CI runs it."""
    project = tmp_path / "shop"
    code, output = init(str(project))
    assert code == 0, output
    assert "DESKLINE_DESK=shop_desk.desk:desk deskline chat" in output
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESKLINE_")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_init_writes_the_whole_template_and_nothing_else(tmp_path: Path) -> None:
    """Every template file arrives (``gitignore`` as ``.gitignore``), byte for byte, with no caches."""
    written = create(tmp_path / "shop")
    on_disk = sorted(p.relative_to(tmp_path / "shop").as_posix() for p in (tmp_path / "shop").rglob("*")
                     if p.is_file())
    assert on_disk == sorted(written.files) == sorted(template_files())
    assert {"README.md", ".gitignore", "shop_desk/desk.py", "shop_desk/records.py", "shop_desk/router.bin",
            "data/examples.csv", "evals/shop.jsonl", "tests/test_shop.py", "pyproject.toml"} <= set(on_disk)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in on_disk)
    assert (tmp_path / "shop" / "shop_desk" / "router.bin").read_bytes() == (
        TEMPLATE / "shop_desk" / "router.bin").read_bytes()
    readme = (tmp_path / "shop" / "README.md").read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("DESKLINE_DESK=shop_desk.desk:desk deskline chat") for line in readme)


def test_init_refuses_a_folder_that_is_not_empty_and_writes_nothing(tmp_path: Path) -> None:
    """A non-empty folder gets exit 2 and an ``error:`` line; its contents stay exactly as they were."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    code, output = init(str(target))
    assert code == 2
    assert "error:" in output and "not empty" in output and "--force" in output
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"

    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    code, output = init(str(a_file))
    assert code == 2 and "error:" in output and "not a folder" in output


def test_force_writes_the_template_and_leaves_other_files_alone(tmp_path: Path) -> None:
    """``--force`` overwrites the template's own files in a non-empty folder and keeps the rest."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    (target / "README.md").write_text("old", encoding="utf-8")
    code, output = init(str(target), "--force")
    assert code == 0, output
    assert (target / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (target / "README.md").read_text(encoding="utf-8").startswith("# Shop desk")
    assert (target / "shop_desk" / "desk.py").is_file()


def test_the_template_router_is_a_fresh_training_on_the_template_examples(tmp_path: Path) -> None:
    """``shop_desk/router.bin`` equals, byte for byte, what the trainer makes of ``data/examples.csv``."""
    pytest.importorskip("sklearn", reason="training a router needs scikit-learn (the dev extra)")
    from deskline.routing.classifier import read_artifact
    from deskline.routing.train import build, read_examples, write

    fresh = write(build(read_examples([TEMPLATE / "data" / "examples.csv"])), tmp_path / "router.bin")
    shipped = TEMPLATE / "shop_desk" / "router.bin"
    stale = ("the template's router is stale: run `deskline train data/examples.csv --out shop_desk/router.bin` "
             "in deskline/scaffold/template")
    if fresh.read_bytes() == shipped.read_bytes():
        return
    # The logistic stacker's float64 coefficients (in the header) come from BLAS, whose summation
    # order depends on the CPU: they may differ in the last digits between machines. Everything
    # else (vocabulary, weights, the data's digest) must be identical.
    (new_header, new_arrays), (old_header, old_arrays) = read_artifact(fresh), read_artifact(shipped)
    assert new_arrays.keys() == old_arrays.keys() and all(
        (new_arrays[k] == old_arrays[k]).all() for k in new_arrays), stale
    assert _same(new_header, old_header), stale


def _same(a: object, b: object) -> bool:
    """Equal, floats within a relative 1e-9 (JSON values: dicts, lists, numbers, strings)."""
    import math

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b

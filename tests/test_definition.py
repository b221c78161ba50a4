"""The desk definition: validation at load, loading by module:attribute, and a domain-free core."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from deskline import (
    Agent,
    Desk,
    DeskDefinitionError,
    EscalationRule,
    Policies,
    Skill,
    SkillCall,
    Texts,
    id_entity,
    load_desk,
    validate,
)
from deskline.agents.builtin import desk as BUILTIN
from deskline.handoffs import AgentResult

ROOT = Path(__file__).resolve().parents[1]


class OrderParams(BaseModel):
    order_id: str


async def _noop(call: SkillCall) -> AgentResult:
    return call.result()


def _skill(name: str, agent: str, **more: object) -> Skill:
    options: dict[str, object] = {"description": name, "params": OrderParams, "run": _noop}
    options.update(more)
    return Skill(name=name, agent=agent, **options)  # type: ignore[arg-type]


def test_the_builtin_desk_is_valid_and_names_its_parts() -> None:
    """The built-in desk passes validation: three agents, five departments, its entities and texts."""
    assert validate(BUILTIN) is BUILTIN
    assert BUILTIN.all_departments == ("tech", "billing", "payment", "human", "other")
    assert {e.name for e in BUILTIN.entities} >= {"invoice_id", "payment_id", "charge_id", "amount"}
    assert load_desk() is load_desk()  # the default desk, loaded once


def test_a_broken_definition_lists_every_problem_at_once() -> None:
    """Unknown agent, duplicates, an entity nobody extracts, a template naming an undeclared fact,
    an empty text and a missing router are all reported in one DeskDefinitionError."""
    broken = Desk(
        name="broken",
        agents=(Agent("orders"), Agent("orders"), Agent("accounts", default_skill="accounts.nope")),
        skills=(
            _skill("orders.status", "orders", requires=("order_id",), templates={"ok": "Order {order_id} is {state}."},
                   facts=("order_id",)),
            _skill("orders.status", "orders"),
            _skill("shipping.track", "shipping"),
            _skill("accounts.look", "accounts", requires=("order_id",), templates={"ok": "Hi {name}"}),
        ),
        entities=(id_entity("sku_code", "SKU"),),
        texts=Texts(clarify=" "),
        policies=Policies(escalations=(EscalationRule(name="legal", reason=""),)),
        router="/nonexistent/router.bin",
    )
    with pytest.raises(DeskDefinitionError) as caught:
        validate(broken)
    problems = "\n".join(caught.value.problems)
    for expected in ("duplicate agent name 'orders'", "duplicate skill name 'orders.status'",
                     "unknown agent 'shipping'", "requires entity 'order_id', which no entity type provides",
                     "names state, which the skill never returns", "declares no facts",
                     "default skill 'accounts.nope'", "text 'clarify' is empty",
                     "escalation rule 'legal' has neither a pattern", "does not exist"):
        assert expected in problems, expected
    assert caught.value.to_dict()["problems"] == list(caught.value.problems)


def test_a_router_trained_on_other_departments_is_refused() -> None:
    """The built-in router names tech/billing/payment: a shop desk using it is told which are unknown."""
    shop = Desk(name="shop", agents=(Agent("orders"),),
                skills=(_skill("orders.status", "orders", requires=("order_id",)),),
                entities=(id_entity("order_id", "ORD"),), router=BUILTIN.router)
    with pytest.raises(DeskDefinitionError, match="trained on departments the desk does not have: tech, billing"):
        validate(shop)


def test_reserved_and_malformed_names_are_refused() -> None:
    """``human``/``other`` belong to the framework; names must be lowercase identifiers."""
    bad = dataclasses.replace(BUILTIN, departments=("tech", "billing", "payment", "human"),
                              agents=(*BUILTIN.agents, Agent("Sales Team")))
    with pytest.raises(DeskDefinitionError) as caught:
        validate(bad)
    text = "\n".join(caught.value.problems)
    assert "'human' is the framework's own" in text and "'Sales Team' is not a lowercase identifier" in text


@pytest.mark.parametrize(("spec", "message"), [
    ("nocolon", "is not module:attribute"),
    ("no_such_module_xyz:desk", "cannot import module 'no_such_module_xyz'"),
    ("deskline.agents.builtin:nothing", "has no attribute 'nothing'"),
    ("deskline.config:Settings", "not a deskline.Desk"),
])
def test_loading_a_desk_that_is_not_there_says_why(spec: str, message: str) -> None:
    """A wrong --desk value is a DeskDefinitionError naming the problem, not an ImportError."""
    with pytest.raises(DeskDefinitionError, match=message):
        load_desk(spec)


def test_a_desk_module_in_the_current_directory_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As with uvicorn, ``module:attribute`` is found in the current directory; a factory is called."""
    (tmp_path / "mydesk.py").write_text(
        "import dataclasses\nfrom deskline.agents.builtin import desk as builtin\n"
        "def make():\n    return dataclasses.replace(builtin, name='mine')\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_desk("mydesk:make").name == "mine"


# -- the core names no part of the built-in desk -------------------------------------------------

CORE = ("hierarchy", "routing", "handoffs", "eventlog", "api", "evals", "observe", "definition",
        "cli.py", "runtime.py", "config.py", "errors.py", "logs.py", "agents/registry.py", "agents/__init__.py")
DOMAIN = re.compile(
    r"\b(?:tech|billing|payments?|invoices?|charges?|refund\w*|invoice_id|payment_id|charge_id|card_last4"
    r"|landlord|passwords?)\b|INV-|PAY-|CH-\d|C-1001", re.IGNORECASE)


def _core_files() -> list[Path]:
    files: list[Path] = []
    for part in CORE:
        path = ROOT / "deskline" / part
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def domain_names_in_core() -> list[str]:
    """Every string constant (docstrings aside) and import in the framework's layers that names
    the built-in desk's domain or imports the built-in desk."""
    found: list[str] = []
    for path in _core_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                if DOMAIN.search(node.value) and "deskline.agents.builtin" not in node.value:
                    found.append(f"{where}: {node.value[:60]!r}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deskline.agents.builtin"):
                found.append(f"{where}: imports {node.module}")
            elif isinstance(node, ast.Import) and any(a.name.startswith("deskline.agents.builtin") for a in node.names):
                found.append(f"{where}: imports the built-in desk")
    return found


def test_the_framework_layers_name_nothing_of_the_builtin_desk() -> None:
    """No framework module imports the built-in desk or holds a string naming its domain; the one
    reference allowed is the default desk's import path, a string resolved at run time."""
    assert domain_names_in_core() == []


def test_the_domain_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The scan itself is not blind: it flags a constant and an import of the built-in desk."""
    assert DOMAIN.search("Could you tell me the invoice number?")
    assert DOMAIN.search("billing") and DOMAIN.search("INV-1001") and not DOMAIN.search("orders")


def test_escalation_patterns_match_case_blind_however_they_are_written() -> None:
    """A lower-case pattern is searched on the lower-cased text (faster), one with capitals with
    re.IGNORECASE: either way the match ignores case, and escapes like \\S keep their meaning."""
    from deskline.definition.model import EscalationRule

    plain = EscalationRule(name="fraud", reason="r", pattern=r"\bstolen\b|\bmy\s+card\S*\s+is\s+gone")
    assert plain("My CARD was STOLEN") and plain("MY CARD!! IS GONE") and not plain("my card is here")
    capital = EscalationRule(name="ids", reason="r", pattern=r"\bINV-\d{4}\b")
    assert capital("inv-1001 is wrong") and capital("INV-1001") and not capital("INV-12")
    assert not EscalationRule(name="none", reason="r")("anything")

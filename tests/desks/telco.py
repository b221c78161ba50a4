"""A desk of another domain, built only on deskline's public API: a mobile operator's desk.

Two agents (``network``: outages and coverage; ``plans``: the customer's plan and data
add-ons), a ``line_id`` entity (``LN-5551``) and an amount, an in-memory system of record with
an action ledger, its own texts and escalation rule. Its router is trained by the tests from
``telco_examples.csv`` (``deskline train``) and given with ``--router`` / ``DESKLINE_ROUTER``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from deskline import (
    Agent,
    Desk,
    EscalationRule,
    Policies,
    RecordsContext,
    Reference,
    Skill,
    SkillCall,
    Texts,
    asks_for_person,
    id_entity,
    money_entity,
)
from deskline.handoffs import AgentResult, Money


@dataclass
class Line:
    id: str
    customer: str
    plan: str
    data_left_gb: int
    status: str


@dataclass
class Done:
    action: str
    facts: dict[str, str]


@dataclass
class TelcoRecords:
    """Lines, outages and the ledger of actions taken, in memory."""

    lines: dict[str, Line] = field(default_factory=lambda: {
        "LN-5551": Line("LN-5551", "T-1", "Unlimited Talk 10 GB", 2, "active"),
        "LN-5552": Line("LN-5552", "T-1", "Basic 2 GB", 0, "suspended"),
        "LN-7001": Line("LN-7001", "T-2", "Family 50 GB", 40, "active"),
    })
    outages: tuple[tuple[str, str], ...] = (("OUT-88", "No 5G signal in the harbour district"),)
    ledger: dict[str, Done] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, customer: str, line_id: str) -> Line | None:
        line = self.lines.get(line_id)
        return line if line is not None and line.customer == customer else None

    def recorded(self, key: str) -> Done | None:
        return self.ledger.get(key)

    def add_data(self, key: str, customer: str, line_id: str, gigabytes: int) -> dict[str, str]:
        with self.lock:
            if key in self.ledger:
                return self.ledger[key].facts
            line = self.lines[line_id]
            line.data_left_gb += gigabytes
            facts = {"line_id": line.id, "added_gb": str(gigabytes), "data_left_gb": str(line.data_left_gb)}
            self.ledger[key] = Done("add_data", facts)
            return facts


class NoParams(BaseModel):
    pass


class LineParams(BaseModel):
    line_id: Reference


async def outage_status(call: SkillCall) -> AgentResult:
    """Known network outages."""
    records: TelcoRecords = call.records
    if not records.outages:
        return call.result(template="all_clear")
    outage_id, summary = records.outages[0]
    return call.result(template="outage", outage_id=outage_id, summary=summary)


async def line_status(call: SkillCall) -> AgentResult:
    """One of the customer's lines: plan, data left, status."""
    params = call.params_as(LineParams)
    line = call.records.line(call.customer_id, params.line_id)
    if line is None:
        return call.result("needs_info", "not_found", missing=("line_id",), line_id=params.line_id)
    return call.result(template="line", line_id=line.id, plan=line.plan, data_left_gb=line.data_left_gb,
                       line_status=line.status)


async def add_data(call: SkillCall) -> AgentResult:
    """Add a 5 GB data pack ($10.00) to a line, exactly once."""
    params = call.params_as(LineParams)
    records: TelcoRecords = call.records
    line = records.line(call.customer_id, params.line_id)
    if line is None:
        return call.result("needs_info", "not_found", missing=("line_id",), line_id=params.line_id)
    done = call.act("add_data", Money(amount=Decimal("10.00")),
                    lambda key: records.add_data(key, call.customer_id, line.id, 5))
    return call.result(template="added", action_key=call.key, facts=done)


SKILLS = (
    Skill(name="network.outage_status", agent="network", description="Known network outages.", params=NoParams,
          run=outage_status, intents=frozenset({"outage", "no_signal"}), keywords=("signal", "outage", "down"),
          templates={"outage": "There is a known problem: {summary} ({outage_id}). Engineers are on it.",
                     "all_clear": "I don't see any network problem right now."},
          facts=("outage_id", "summary")),
    Skill(name="plans.line_status", agent="plans", description="Plan, data left and status of a line.",
          params=LineParams, run=line_status, requires=("line_id",), intents=frozenset({"data_left", "my_plan"}),
          keywords=("plan", "data left", "how much data"),
          templates={"line": "Line {line_id} is {line_status} on {plan}, with {data_left_gb} GB of data left.",
                     "not_found": "I couldn't find line {line_id}. Could you check the number? It starts with LN-."},
          facts=("line_id", "plan", "data_left_gb", "line_status")),
    Skill(name="plans.add_data", agent="plans", description="Add a 5 GB data pack to a line.", params=LineParams,
          run=add_data, requires=("line_id",), intents=frozenset({"add_data"}), keywords=("add data", "data pack"),
          action=True,
          templates={"added": "I've added {added_gb} GB to line {line_id}; you now have {data_left_gb} GB left.",
                     "not_found": "I couldn't find line {line_id}. Could you check the number? It starts with LN-."},
          facts=("line_id", "added_gb", "data_left_gb")),
)

CANCEL_THREAT = EscalationRule(name="cancellation_threat", reason="the customer threatens to leave",
                               pattern=r"\b(?:cancel|leave|switch)\b.*\b(?:contract|provider|carrier)\b",
                               reply="I'm sorry to hear that. A retention specialist will pick this up right away.",
                               priority=1)


def open_records(context: RecordsContext) -> Any:
    return TelcoRecords()


desk = Desk(
    name="telco",
    description="A mobile operator's desk: network problems and plans.",
    agents=(Agent("network", "Outages, signal and coverage."),
            Agent("plans", "The customer's plan, data left and data add-ons.", default_skill="plans.line_status")),
    skills=SKILLS,
    entities=(id_entity("line_id", "LN", question="Which line is this about? Its number starts with LN-."),
              money_entity("amount")),
    open_records=open_records,
    policies=Policies(approval_limit=Decimal("50"), escalations=(CANCEL_THREAT, asks_for_person())),
    texts=Texts(greeting="Hi! Ask me about your network or your plan.",
                clarify="Is this about the network (signal, outages) or about your plan and data?",
                out_of_scope="I'm the support assistant for your mobile line: network problems, your plan and data.",
                chat_banner="telco desk — ask about signal, your plan or data."),
    default_customer="T-1",
)

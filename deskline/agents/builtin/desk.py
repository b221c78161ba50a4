"""The built-in desk's definition: agents, skills, entities, records, router, policies, texts."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from deskline.agents.builtin import billing, payment, tech
from deskline.agents.builtin.backend.seed import DEMO_CUSTOMER_ID
from deskline.agents.builtin.policy import refund_policy
from deskline.agents.builtin.references import invoices_referred, payments_referred
from deskline.agents.builtin.texts import ASKED_FOR_PERSON, FRAUD, TEXTS
from deskline.definition import Agent, Desk, EscalationRule, Policies, RecordsContext, asks_for_person
from deskline.handoffs.entities import email_entity, id_entity, money_entity, pattern_entity

ROUTER = Path(__file__).with_name("router") / "triage.bin"
WORKFLOWS = Path(__file__).with_name("workflows.yaml")
LOCALES = Path(__file__).with_name("locales")  # es.po and zh.po: the desk's words in Spanish and Chinese
TRAINING_DATA = tuple(Path(__file__).with_name("router") / "data" / name
                      for name in ("banking77_train.csv", "clinc150_train.csv", "desk_examples.csv"))

FRAUD_PATTERN = (
    r"\bfraud\w*|\bscam(?:s|med|mer|mers)?\b|\bstolen\b|\bstole\b|\bhacked\b|\bunauthori[sz]ed\b|identity\s+theft"
    r"|(?:lost|stolen)\s+(?:my\s+)?card|card\s+(?:was|has\s+been|got)\s+(?:lost|stolen)"
    r"|(?:didn'?t|did\s+not|never)\s+(?:make|authori[sz]e|approve)\s+(?:this|that|these|the)"
    r"|(?:don'?t|do\s+not)\s+recogni[sz]e\s+(?:this|that|these|the|a)"
    # Spanish
    r"|\bfraude\w*|\bestafa\w*|\brobad[oa]s?\b|\brob(?:aron|ó)\b|\bhacke(?:ad|ar)\w*"
    r"|\bno\s+(?:autoric[eé]|reconozco|hice|realic[eé])\s+(?:este|esta|ese|esa|estos|estas|el|la|los|las)\b"
    r"|(?:perd[ií]|se\s+me\s+perdi[oó])\s+(?:mi\s+)?tarjeta|tarjeta\s+(?:perdida|robada)|suplantaci[oó]n\s+de\s+identidad"
    # Chinese
    r"|盗刷|被盗|被偷|偷了|诈骗|骗子|被骗|冒用|盗用|不是我(?:本人)?(?:买|付|刷|消费|转|操作)的?"
    r"|(?:卡|银行卡|信用卡)(?:丢了|丢失|不见了|被偷)|不认识(?:这|那)笔|账户被(?:黑|盗)|被黑"
)
CARD_LAST4 = (
    r"(?:ending(?:\s+in)?|last\s+(?:four|4)(?:\s+digits)?(?:\s+(?:are|is))?|card\s+(?:no\.?\s*)?\*+)"
    r"[\s:#*]*(\d{4})\b"
)

AGENTS = (
    Agent("tech", "Logins, passwords, account locks, the app and outages.", default_skill="tech.check_service_status"),
    Agent("billing", "Invoices, charges, duplicate charges and refunds.", default_skill="billing.billing_summary"),
    Agent("payment", "Transfers, failed payments and payment history.", default_skill="payment.list_payments"),
)
ENTITIES = (
    id_entity("invoice_id", "INV", question="Could you tell me the invoice number? It starts with INV-.",
              resolve=invoices_referred),
    id_entity("payment_id", "PAY", "TRF", "TX",
              question="Could you tell me the payment reference? It starts with PAY-.", resolve=payments_referred),
    id_entity("charge_id", "CH", question="Could you tell me the charge reference? It starts with CH-."),
    money_entity("amount"),
    email_entity("email"),
    pattern_entity("card_last4", CARD_LAST4, personal=True,
                   question="Could you tell me the last four digits of the card?"),
)
POLICIES = Policies(
    approval_limit=Decimal("500"),
    escalations=(
        # Before the request for a person: fraud keeps its priority.
        EscalationRule(name="fraud", reason="possible fraud or a lost or stolen card", pattern=FRAUD_PATTERN,
                       reply=FRAUD, priority=1),
        asks_for_person(reply=ASKED_FOR_PERSON),
    ),
    actions={"billing.refund_charge": refund_policy, "billing.review_duplicate_charge": refund_policy},
)


def open_records(context: RecordsContext) -> Any:
    """The demo system of record: in the desk's database (seeded once), or in memory."""
    if context.engine is None:
        from deskline.agents.builtin.backend.memory import MemoryBackend

        return MemoryBackend()
    from deskline.agents.builtin.backend.sql import SqlBackend

    return SqlBackend(context.engine)


desk = Desk(
    name="builtin",
    description="The built-in account-support desk: sign-in, billing and payments.",
    agents=AGENTS,
    skills=(*tech.SKILLS, *billing.SKILLS, *payment.SKILLS),
    entities=ENTITIES,
    router=ROUTER,
    open_records=open_records,
    policies=POLICIES,
    texts=TEXTS,
    default_customer=DEMO_CUSTOMER_ID,
    training_data=TRAINING_DATA,
    workflows=(WORKFLOWS,),
    languages=("en", "es", "zh"),
    catalogs=LOCALES,
)

"""The tech agent: sign-in, account locks and service status.

Its actions (send a reset link, unlock an account) move no money, so only ``allow_actions``
gates them. A reset link only ever goes to the email on file, whatever address the customer
types, and the reply shows that address masked: a chat transcript must not leak it.
"""

from __future__ import annotations

from deskline.agents.builtin.backend import Component, Customer, Incident, mask_email, show_time
from deskline.agents.builtin.policy import SENSITIVE_S
from deskline.agents.registry import Skill, SkillCall
from deskline.handoffs import AgentResult
from deskline.handoffs.payload import Frozen

NO_ACCOUNT = "I couldn't find your account, so I'm passing you to a colleague who can help."


class NoParams(Frozen):
    """The skill needs nothing beyond the case's own customer."""


class ResetParams(Frozen):
    email: str | None = None


def _no_account(call: SkillCall) -> AgentResult:
    return call.result(
        "escalate", "no_account", reason=f"no customer record for {call.customer_id}"
    )


def _account_facts(customer: Customer) -> dict[str, str]:
    return {
        "account_status": customer.status,
        "plan": customer.plan,
        "last_login": show_time(customer.last_login),
        "failed_logins": str(customer.failed_logins),
        "masked_email": mask_email(customer.email),
    }


# -- tech.reset_password ------------------------------------------------------------------------

RESET_TEMPLATES = {
    "sent": "I've sent a password reset link to {masked_email}; it expires on {link_expires}.",
    "sent_on_file": (
        "For your security, reset links only go to the email on file, so I've sent one to "
        "{masked_email}; it expires on {link_expires}."
    ),
    "no_account": NO_ACCOUNT,
}


async def reset_password(call: SkillCall) -> AgentResult:
    """Send a reset link to the email on file (never to an address typed in the chat)."""
    params = call.params_as(ResetParams)
    customer = call.backend.customer(call.customer_id)
    if customer is None:
        return _no_account(call)
    facts = call.act(
        "send_password_reset",
        None,
        lambda key: call.backend.send_password_reset(key, customer.id),
    )
    typed_other = params.email is not None and params.email.lower() != customer.email.lower()
    template = "sent_on_file" if typed_other else "sent"
    return call.result(template=template, action_key=call.key, facts=facts)


# -- tech.unlock_account ------------------------------------------------------------------------

UNLOCK_TEMPLATES = {
    "unlocked": "I've unlocked your account as of {unlocked_at}; you can sign in again now.",
    "not_locked": (
        "Your account isn't locked: it's {account_status}, and your last sign-in was on "
        "{last_login}."
    ),
    "no_account": NO_ACCOUNT,
}


async def unlock_account(call: SkillCall) -> AgentResult:
    """Unlock an account locked after failed sign-ins."""
    customer = call.backend.customer(call.customer_id)
    if customer is None:
        return _no_account(call)
    if customer.status != "locked" and call.recorded("unlock_account") is None:
        return call.result(template="not_locked", facts=_account_facts(customer))
    facts = call.act(
        "unlock_account", None, lambda key: call.backend.unlock_account(key, customer.id)
    )
    return call.result(template="unlocked", action_key=call.key, facts=facts)


async def relock_account(call: SkillCall) -> AgentResult:
    """The compensation of ``unlock_account`` when its plan fails later: lock the account again
    (under the key ``<unlock's key>:undo``, so once)."""
    customer = call.backend.customer(call.customer_id)
    if customer is None:
        return _no_account(call)
    if customer.status == "locked" and call.recorded("relock_account") is None:
        return call.result(template="already_locked", facts=_account_facts(customer))  # nothing to undo
    facts = call.act(
        "relock_account", None, lambda key: call.backend.relock_account(key, customer.id)
    )
    return call.result(template="relocked", action_key=call.key, facts=facts)


# -- tech.check_account -------------------------------------------------------------------------

ACCOUNT_TEMPLATES = {
    "active": "Your account is active on the {plan} plan; your last sign-in was on {last_login}.",
    "active_incident": (
        "Your account is active on the {plan} plan, but there is a known problem with sign-in "
        "({incident_id}): {summary} Our engineers are working on it."
    ),
    "locked": (
        "Your account is locked after {failed_logins} failed sign-in attempts; your last "
        "successful sign-in was on {last_login}. I can unlock it, or send a password reset "
        "link to {masked_email}."
    ),
    "no_account": NO_ACCOUNT,
}


async def check_account(call: SkillCall) -> AgentResult:
    """The account's state and last sign-in, and any ongoing sign-in incident."""
    customer = call.backend.customer(call.customer_id)
    if customer is None:
        return _no_account(call)
    facts = _account_facts(customer)
    if customer.status == "locked":
        return call.result(template="locked", facts=facts, offer=call.offer("tech.unlock_account"))
    ongoing = call.backend.incidents("login", ongoing=True)
    if ongoing:
        incident = ongoing[0]
        return call.result(
            template="active_incident",
            incident_id=incident.id,
            summary=incident.summary,
            facts=facts,
        )
    return call.result(template="active", facts=facts)


# -- tech.check_service_status ------------------------------------------------------------------

STATUS_TEMPLATES = {
    "ongoing": (
        "There is a known problem with {component} ({incident_id}): {summary} It started on "
        "{started}, and our engineers are working on it."
    ),
    "all_clear": "I don't see any problem with {scope} right now.",
}

_COMPONENT_NAMES: dict[Component, str] = {
    "login": "sign-in",
    "app": "the app",
    "payments": "payments",
}
_COMPONENT_BY_INTENT: dict[str, Component] = {
    "login_problem": "login",
    "passcode_forgotten": "login",
    "app_crash": "app",
    "card_not_working": "payments",
    "contactless_not_working": "payments",
    "virtual_card_not_working": "payments",
}
_COMPONENT_WORDS: tuple[tuple[Component, tuple[str, ...]], ...] = (
    ("login", ("log in", "login", "sign in", "sign-in", "signin", "password", "code")),
    ("payments", ("payment", "card", "transfer")),
    ("app", ("app",)),
)


def _component(call: SkillCall) -> Component | None:
    """The component the customer means: from the intent, else from their latest words."""
    case = call.handoff.case
    if case.intent in _COMPONENT_BY_INTENT:
        return _COMPONENT_BY_INTENT[case.intent]
    said = [item.text.lower() for item in case.history if item.role == "customer"]
    if said:
        for component, words in _COMPONENT_WORDS:
            if any(word in said[-1] for word in words):
                return component
    return None


def _incident_facts(incident: Incident) -> dict[str, str]:
    return {
        "incident_id": incident.id,
        "component": _COMPONENT_NAMES[incident.component],
        "summary": incident.summary,
        "started": show_time(incident.started),
    }


async def check_service_status(call: SkillCall) -> AgentResult:
    """Ongoing incidents for the component the customer means (or any component)."""
    component = _component(call)
    ongoing = call.backend.incidents(component, ongoing=True)
    if ongoing:
        return call.result(template="ongoing", facts=_incident_facts(ongoing[0]))
    scope = "our services" if component is None else _COMPONENT_NAMES[component]
    return call.result(template="all_clear", scope=scope)


SKILLS: tuple[Skill, ...] = (
    Skill(
        name="tech.reset_password",
        agent="tech",
        description="Send a password reset link to the email on file for the customer's account.",
        params=ResetParams,
        run=reset_password,
        intents=frozenset({"passcode_forgotten", "password_reset", "forgot_password"}),
        keywords=("password", "passcode", "reset link", "forgot"),
        action=True,
        irreversible="a reset link that was sent cannot be unsent",
        verification_s=SENSITIVE_S,
        templates=RESET_TEMPLATES,
        facts=('masked_email', 'link_expires'),
    ),
    Skill(
        name="tech.unlock_account",
        agent="tech",
        description="Unlock the customer's account after it was locked by failed sign-ins.",
        params=NoParams,
        run=unlock_account,
        intents=frozenset({"account_blocked", "account_locked", "unlock_account"}),
        keywords=("unlock", "locked out", "locked", "blocked"),
        action=True,
        compensate=relock_account,
        verification_s=SENSITIVE_S,
        templates=UNLOCK_TEMPLATES,
        facts=('account_status', 'last_login', 'unlocked_at'),
    ),
    Skill(
        name="tech.check_service_status",
        agent="tech",
        description="Check for ongoing service incidents (sign-in, app, payments).",
        params=NoParams,
        run=check_service_status,
        intents=frozenset({"service_outage", "app_crash"}),
        keywords=("outage", "down", "crash", "not loading", "not working", "status"),
        templates=STATUS_TEMPLATES,
        public=True,
        facts=('component', 'incident_id', 'scope', 'started', 'summary'),
    ),
    Skill(
        name="tech.check_account",
        agent="tech",
        description="Look up the customer's account status, plan and last sign-in.",
        params=NoParams,
        run=check_account,
        intents=frozenset({"login_problem", "account_status"}),
        keywords=("log in", "login", "sign in", "sign-in", "account status"),
        templates=ACCOUNT_TEMPLATES,
        offers=("tech.unlock_account",),
        facts=('account_status', 'plan', 'last_login', 'failed_logins', 'masked_email', 'incident_id', 'summary'),
    ),
)

"""The LLM planner: one model call whose tools are the agents' skills plus ``plan_execution``.

Used only when the local classifier is not confident and a model is configured. The model
answers with tool calls: one skill (single), several (parallel), or ``plan_execution`` with
steps that depend on each other (sequential); ``ask_customer`` and ``escalate_to_human`` let it
abstain; each of the desk's declared workflows is one more tool (``run_workflow__<name>``), so
choosing a whole procedure costs no extra call. The answer is validated against the registry;
an invalid one raises, and the router moves on to the next model group.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic_ai.direct import model_request
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    ToolCallPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import ToolDefinition

from deskline.definition import Desk
from deskline.errors import PlanError
from deskline.handoffs.payload import HUMAN, OTHER, Entities
from deskline.handoffs.plan import Plan, PlanStep
from deskline.hierarchy.plan import validate
from deskline.hierarchy.workflows import TOOL_PREFIX, entity_arguments, plan_for, tool_parameters
from deskline.hierarchy.workflows import tool_name as workflow_tool

PLANNER_PROMPT = """\
You are the triage planner of a customer-support desk with {count} agents: {agents}.
Read the customer's message and answer ONLY with tool calls:
- call the one skill that handles it, or several skills if the message names independent problems;
- call plan_execution when one step needs another's result first (give depends_on);
- call a run_workflow__ tool when the message asks for one of the desk's set procedures;
- call ask_customer when you cannot tell what they need, escalate_to_human when they ask for a
  person, report fraud, or are upset. Never invent ids: pass only ids the customer wrote.
The customer may write in any language: read it as written, and ask your question in their language."""


class PlannedStep(BaseModel):
    step_id: str = Field(description="A short id such as s1")
    skill: str = Field(description="A skill tool name, e.g. orders__lookup_order")
    depends_on: list[str] = Field(default_factory=list)
    arguments: dict[str, str] = Field(default_factory=dict)


class PlanExecution(BaseModel):
    steps: list[PlannedStep] = Field(min_length=1, max_length=6)


class AskCustomer(BaseModel):
    question: str


class EscalateToHuman(BaseModel):
    reason: str


META: dict[str, tuple[str, type[BaseModel]]] = {
    "plan_execution": ("Run several skills in dependency order (sequential mode).", PlanExecution),
    "ask_customer": ("Ask the customer a clarifying question instead of acting.", AskCustomer),
    "escalate_to_human": ("Hand the conversation to a person.", EscalateToHuman),
}


def tool_name(skill_name: str) -> str:
    return skill_name.replace(".", "__")


def planner_prompt(desk: Desk) -> str:
    """The planner's instructions for ``desk``: its agents and what each handles."""
    agents = ", ".join(f"{a.name} ({a.description.rstrip('.')})" if a.description else a.name for a in desk.agents)
    return PLANNER_PROMPT.format(count=len(desk.agents), agents=agents)


class LLMPlanner:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.prompt = planner_prompt(desk)
        self.entity_names = frozenset(desk.extractor.by_name)
        self.departments = {a.name: a.routes_from for a in desk.agents}
        registry = self.registry = desk.registry
        self.tools = [
            ToolDefinition(name=tool_name(s.name), description=s.description,
                           parameters_json_schema=s.params.model_json_schema())
            for s in registry.skills.values()
        ] + [ToolDefinition(name=workflow_tool(w), description=w.description or f"The {w.name} procedure.",
                            parameters_json_schema=tool_parameters(desk, w))
             for w in desk.workflow_map.values()
        ] + [ToolDefinition(name=name, description=desc, parameters_json_schema=model.model_json_schema())
             for name, (desc, model) in META.items()]
        self._skills = {tool_name(s.name): s for s in registry.skills.values()}
        self._workflows = {workflow_tool(w): w for w in desk.workflow_map.values()}

    def messages(self, text: str, hint: str = "") -> list[ModelMessage]:
        user = text if not hint else f"{text}\n\n(local classifier's best guess: {hint})"
        return [ModelRequest(parts=[SystemPromptPart(content=self.prompt), UserPromptPart(content=user)])]

    async def plan(self, model: Model, text: str, hint: str = "", known: Entities | None = None) -> tuple[Plan, Entities]:
        response = await model_request(
            model, self.messages(text, hint),
            model_request_parameters=ModelRequestParameters(function_tools=self.tools, allow_text_output=False))
        return self.parse(response, said=text, known=known)

    def parse(self, response: ModelResponse, said: str = "", known: Entities | None = None) -> tuple[Plan, Entities]:
        """The model's tool calls as a validated plan and the entities its arguments named."""
        calls = [p for p in response.parts if isinstance(p, ToolCallPart)]
        if not calls:
            raise PlanError("the planner answered without a tool call")
        found: dict[str, list[str]] = {}
        first = calls[0]
        if first.tool_name == "ask_customer":
            ask = AskCustomer.model_validate(first.args_as_dict())
            plan = self._plan("clarify", (), OTHER, f"the model asks: {ask.question}")
            return plan.model_copy(update={"question": ask.question.strip()}), Entities()
        if first.tool_name == "escalate_to_human":
            why = EscalateToHuman.model_validate(first.args_as_dict())
            return self._plan("escalate", (), HUMAN, f"the model escalates: {why.reason}"), Entities()
        if first.tool_name.startswith(TOOL_PREFIX):
            return self._workflow(first, said, known)
        if first.tool_name == "plan_execution":
            execution = PlanExecution.model_validate(first.args_as_dict())
            steps = tuple(self._step(s.step_id, s.skill, tuple(s.depends_on), s.arguments, found, said, known)
                          for s in execution.steps)
            mode = "sequential" if any(s.depends_on for s in steps) else ("single" if len(steps) == 1 else "parallel")
        else:
            steps = tuple(self._step(f"s{i}", c.tool_name, (), _args(c), found, said, known)
                          for i, c in enumerate(calls, 1))
            mode = "single" if len(steps) == 1 else "parallel"
        plan = validate(self._plan(mode, steps, self.departments[steps[0].agent], "planned by the model"), self.registry)
        return plan, Entities(values={k: tuple(dict.fromkeys(v)) for k, v in found.items()})

    def _step(self, step_id: str, name: str, depends_on: tuple[str, ...], args: dict[str, Any],
              found: dict[str, list[str]], said: str = "", known: Entities | None = None) -> PlanStep:
        skill = self._skills.get(name) or self._skills.get(tool_name(name))
        if skill is None:
            raise PlanError(f"the planner called an unknown skill {name!r}", skill=name)
        unknown = set(args) - set(skill.params.model_fields)
        if unknown:
            raise PlanError(f"{name} has no parameters {sorted(unknown)}")
        # The model proposes, the customer's words dispose: an entity argument counts only when it
        # is exactly (after the desk's own normalisation) a value the customer named, now or earlier
        # in the conversation. Anything else is dropped from a lookup (the customer's own entities
        # are used) and refuses an action: a prompt injection cannot choose what money moves or
        # where a reset link goes, and "1002" never replaces the customer's INV-1002.
        allowed = self._allowed(said, known)
        for key, value in args.items():
            if key not in self.entity_names or value in (None, ""):
                continue
            normalised = self._normalise(key, str(value))
            if normalised is not None and normalised in allowed.get(key, ()):
                found.setdefault(key, []).append(normalised)
            elif skill.action:
                raise PlanError(f"the plan acts on {key}={value!r}, which the customer never named", skill=name)
        return PlanStep(step_id=step_id, agent=skill.agent, skill=skill.name, depends_on=depends_on)

    def _workflow(self, call: ToolCallPart, said: str, known: Entities | None) -> tuple[Plan, Entities]:
        """A declared workflow, chosen as a whole: its entity arguments checked like a skill's."""
        workflow = self._workflows.get(call.tool_name)
        if workflow is None:
            raise PlanError(f"the planner called an unknown workflow {call.tool_name!r}", skill=call.tool_name)
        args = entity_arguments(self.desk, workflow, _args(call))
        acting = any(self.registry[n.skill].action for n in workflow.nodes)
        named = " ".join(v for values in (known or Entities()).values.values() for v in values) + " " + said.upper()
        found: dict[str, list[str]] = {}
        for key, value in args.items():
            if acting and key.endswith("_id") and value.strip().upper() not in named:
                raise PlanError(f"the plan acts on {value}, which the customer never named", skill=call.tool_name)
            found.setdefault(key, []).append(value.strip().upper() if key.endswith("_id") else value)
        plan = plan_for(self.desk, workflow, intent="llm_plan", confidence=1.0, stage="llm",
                        reason=f"planned by the model: workflow {workflow.name}")
        return plan, Entities(values={k: tuple(dict.fromkeys(v)) for k, v in found.items()})

    def _allowed(self, said: str, known: Entities | None) -> dict[str, set[str]]:
        """Every value of each entity the customer's words (or the case so far) hold."""
        allowed: dict[str, set[str]] = {}
        for source in (self.desk.extractor(said), known or Entities()):
            for name, values in source.values.items():
                allowed.setdefault(name, set()).update(values)
        return allowed

    def _normalise(self, name: str, value: str) -> str | None:
        """``value`` as the desk's extractor reads it (``"inv 1002"`` -> ``"INV-1002"``); None when it
        does not read as exactly one such entity (``"1002"`` is no invoice id)."""
        entity = self.desk.extractor.by_name.get(name)
        found = list(dict.fromkeys(entity.find(value))) if entity is not None else []
        return found[0] if len(found) == 1 else None

    @staticmethod
    def _plan(mode: str, steps: tuple[PlanStep, ...], department: str, reason: str) -> Plan:
        return Plan(mode=mode, department=department, intent="llm_plan", confidence=1.0,
                    stage="llm", steps=steps, reason=reason)


def _args(call: ToolCallPart) -> dict[str, Any]:
    args = call.args_as_dict()
    if not isinstance(args, dict):
        raise PlanError(f"arguments of {call.tool_name} are not an object")
    return args

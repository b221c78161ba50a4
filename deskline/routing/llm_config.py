"""The models file: litellm's own format (``model_list``, ``router_settings``) plus a small
``deskline`` section mapping the desk's roles to model groups, so a litellm proxy config can be
reused as it is.

    model_list:
      - model_name: planner                  # a model group
        litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY,
                         timeout: 10, input_cost_per_token: 1.5e-7, output_cost_per_token: 6e-7}
    router_settings:
      fallbacks: [{planner: [planner-backup]}]
    deskline:                                # optional; these are the defaults
      roles: {planner: planner, writer: writer, specialist: specialist}
      tool_choice: {planner: auto, verifier: auto}   # required / auto / none, per role
      turn_deadline_s: 8                             # every model call of a turn, fallbacks included
      role_timeout_s: {planner: 4, writer: 4}        # one attempt of a role (never past the deadline)

``tool_choice`` is sent with every call that offers tools. ``auto`` (the default) works with every
OpenAI-compatible server; the desk validates the plan and falls back when the model answers in
prose. ``required`` forces a tool call where the provider supports it (OpenAI, Anthropic, vLLM
with tool parsing); a stock llama-cpp-python server answers 500 to it, so leave it at ``auto``.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deskline.errors import ConfigError

Role = Literal["planner", "writer", "specialist", "verifier"]
ToolChoice = Literal["auto", "required", "none"]
ROLE_TEMPERATURE: dict[Role, float] = {"planner": 0.0, "writer": 0.7, "specialist": 0.0, "verifier": 0.0}


def _roles() -> dict[Role, str]:
    return {"planner": "planner", "writer": "writer", "specialist": "specialist"}


def _role_timeouts() -> dict[Role, float]:
    return {"planner": 4.0, "writer": 4.0, "verifier": 3.0, "specialist": 4.0}


def _max_tokens() -> dict[Role, int]:
    return {"planner": 400, "writer": 300, "specialist": 400, "verifier": 100}


class DesklineModels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: dict[Role, str] = Field(default_factory=lambda: _roles())
    temperature: dict[Role, float] = Field(default_factory=lambda: dict(ROLE_TEMPERATURE))
    cost_fallbacks: dict[str, str] = Field(default_factory=dict)
    max_cost_per_conversation_usd: Decimal = Decimal("1.00")
    plan_cache_ttl_s: float = 3600.0
    redis_url: str | None = None
    max_tokens: dict[Role, int] = Field(default_factory=lambda: _max_tokens())
    tool_choice: dict[Role, ToolChoice] = Field(default_factory=dict)  # a role not named: "auto"
    turn_deadline_s: float = Field(default=8.0, gt=0)  # all model calls of one turn, fallbacks included
    role_timeout_s: dict[Role, float] = Field(default_factory=lambda: _role_timeouts())


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    model_list: list[dict[str, Any]]
    router_settings: dict[str, Any] = Field(default_factory=dict)
    deskline: DesklineModels = Field(default_factory=DesklineModels)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(str(d["model_name"]) for d in self.model_list))

    def group_for(self, role: Role) -> str | None:
        """The model group serving ``role``; the verifier uses the planner's unless mapped."""
        group = self.deskline.roles.get(role) or (self.deskline.roles.get("planner") if role == "verifier" else None)
        return group if group in self.groups else None

    def chain(self, group: str) -> list[str]:
        """``group`` and its quality fallbacks from ``router_settings.fallbacks``, in order."""
        out = [group]
        for rule in self.router_settings.get("fallbacks") or []:
            for name, nexts in dict(rule).items():
                if name == group:
                    out += [n for n in nexts if n not in out]
        return out

    def price(self, group: str) -> tuple[Decimal, Decimal]:
        """(input, output) USD per token of the group's first priced deployment; 0 if unpriced."""
        for d in self.model_list:
            if d.get("model_name") != group:
                continue
            params = {**(d.get("model_info") or {}), **(d.get("litellm_params") or {})}
            if "input_cost_per_token" in params or "output_cost_per_token" in params:
                return (Decimal(str(params.get("input_cost_per_token", 0))),
                        Decimal(str(params.get("output_cost_per_token", 0))))
        return Decimal(0), Decimal(0)

    def fingerprint(self) -> str:
        """A short hash of the whole configuration: part of every plan-cache key."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def load_models(path: Path) -> ModelsFile:
    """The models file at ``path``, or ``ConfigError`` saying what is wrong with it."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the models file {path}: {exc.strerror}", path=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"the models file {path} is not valid YAML: {exc}", path=str(path)) from exc
    try:
        models = ModelsFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ConfigError(f"the models file {path} is not valid: {where}: {first['msg']}", path=str(path)) from exc
    return models

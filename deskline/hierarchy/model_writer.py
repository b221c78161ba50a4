"""The model writer: one call that turns the agents' results into a friendlier reply.

It gets the results' facts and the template draft, and may only restate them; its reply passes
the same grounding check as the template writer's, and one that fails raises ``InvalidOutput`` so
the router tries the next group, and in the end the template draft is sent.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic_ai.direct import model_request
from pydantic_ai.messages import ModelRequest, SystemPromptPart, TextPart, UserPromptPart
from pydantic_ai.models import Model

from deskline.handoffs.payload import AgentResult
from deskline.hierarchy.checks import model_text_problems
from deskline.i18n.detect import detect
from deskline.i18n.formats import language_names
from deskline.routing.adapter import InvalidOutput

WRITER_PROMPT = """\
You write the reply a customer-support desk sends. You get the customer's message, the facts the
desk's agents found, and a draft. Write a short, warm reply (at most 4 sentences) that says what
the draft says. Use only the facts given: never add an amount, date, id or promise that is not in
them. Do not mention agents, tools or drafts."""


async def write_with_model(model: Model, text: str, results: Sequence[AgentResult], draft: str,
                           language: str = "en") -> str:
    """The model's reply, in ``language``, or ``InvalidOutput`` saying why it cannot be sent."""
    facts = [{"skill": r.skill, "status": r.status, "facts": r.facts} for r in results]
    prompt = (f"Customer: {text}\n\nFacts: {json.dumps(facts, ensure_ascii=False)}\n\nDraft: {draft}"
              f"\n\nWrite the reply in {language_names((language,), 'en')}.")
    response = await model_request(model, [ModelRequest(parts=[SystemPromptPart(content=WRITER_PROMPT),
                                                               UserPromptPart(content=prompt)])])
    reply = "".join(p.content for p in response.parts if isinstance(p, TextPart)).strip()
    if not reply:
        raise InvalidOutput("the writer returned no text")
    refused = model_text_problems(reply, results, draft=draft, said=text, prompts=(WRITER_PROMPT,))
    written_in = detect(reply, (language,)).language
    if written_in not in (None, language):
        refused.append(f"the reply is in {written_in}, not the conversation's {language}")
    if refused:
        raise InvalidOutput("; ".join(refused))
    return reply

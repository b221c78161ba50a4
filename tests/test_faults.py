"""Provider faults: 30% of model requests fail in every way, and every turn is still answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from deskline.testing import FakeOpenAI
from tests.test_models import desk_for, models_file

MESSAGES = [
    "zorp the flibber quux",
    "I was charged twice for invoice INV-1001",
    "something is off with my account thingy",
    "my transfer to my landlord hasn't arrived",
    "hmm what about the blue one",
]


def test_thirty_percent_faults_every_turn_answered_within_budget(tmp_path: Path) -> None:
    """500s, 429s, timeouts, malformed tool calls and invalid output on 30% of requests: every turn
    gets a reply or an escalation, nothing is raised, and the server sees at most 2 calls a turn."""
    kinds = ("500", "429", "slow", "malformed_tool_call", "invalid_output")
    with FakeOpenAI(fault_rate=0.3, fault_kinds=kinds, slow_seconds=1.5, seed=7) as server:
        path = models_file(tmp_path, server)
        doc = path.read_text().replace("timeout: 5", "timeout: 0.4")
        path.write_text(doc)
        desk = desk_for(path)
        per_turn: list[int] = []
        for i in range(25):
            before = server.count()
            r = asyncio.run(desk.handle(f"c{i}", MESSAGES[i % len(MESSAGES)] + f" #{i}"))
            per_turn.append(server.count() - before)
            assert r.reply or r.escalated, r
            assert r.llm_calls == per_turn[-1]
        faults = sum(1 for x in server.requests if x.fault)
    assert max(per_turn) <= 2
    assert faults >= 5  # the faults really happened

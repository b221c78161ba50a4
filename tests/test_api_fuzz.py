"""Schema-driven fuzzing: schemathesis reads the served OpenAPI and sends what it allows (and what
it forbids) to a live app; no answer may be a 5xx, and every answer must match the schema.

Bounded for CI: a fixed number of examples per operation, derandomized so a run is reproducible.
Set ``DESKLINE_FUZZ_EXAMPLES`` (and ``DESKLINE_FUZZ_RANDOM=1``) to search longer locally.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_api import DOUBLE_CHARGE, MakeLive, live_apps

EXAMPLES = int(os.environ.get("DESKLINE_FUZZ_EXAMPLES", "12"))
# Not negative_data_rejection: unknown query parameters are ignored on purpose (cache busters).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def make_live(sqlite_url: str) -> Iterator[MakeLive]:
    """Live apps on this test's SQLite file (see tests/test_api.py)."""
    with live_apps(sqlite_url) as make:
        yield make


def test_fuzzing_the_served_schema_finds_no_server_error(make_live: MakeLive) -> None:
    """Valid and invalid requests to every operation, real and made-up ids: no 5xx, no drift."""
    live = make_live()
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    cid, customer = live.customer()
    live.say(cid, customer, DOUBLE_CHARGE)  # escalated, with a pending action: the console has work
    agent = live.agent("fuzz")
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        headers = agent if "console" in operation.definition.raw.get("tags", ()) else customer
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies = [operation.as_strategy(generation_mode=mode)]
            if "{conversation_id}" in operation.path:  # also aim at a conversation this token opens
                strategies.append(operation.as_strategy(generation_mode=mode, path_parameters={"conversation_id": cid}))
            try:
                calls += _fuzz(st.one_of(strategies), live.url, headers, CHECKS, EXAMPLES * len(strategies))
            except Unsatisfiable:  # nothing to make invalid: no parameters and no body
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls >= 10 * EXAMPLES


def _fuzz(
    cases: st.SearchStrategy[Any],
    base_url: str,
    headers: dict[str, str],
    checks: list[Any],
    examples: int,
) -> int:
    """Send up to ``examples`` cases and validate every response; returns how many were sent."""
    sent = 0

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=os.environ.get("DESKLINE_FUZZ_RANDOM") != "1",
    )
    @given(case=cases)
    def run(case: Any) -> None:
        nonlocal sent
        sent += 1
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        case.validate_response(response, checks=checks, headers=headers)

    run()
    return sent

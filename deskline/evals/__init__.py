"""The offline eval suite: recorded queries through a fresh desk, scored stage by stage.

Built on pydantic-evals (datasets, evaluators, reports). Names are imported on first use, so
``deskline.evals.commands`` (loaded by every ``deskline`` start) does not import pydantic-evals.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "DatasetError": "deskline.evals.dataset",
    "Dialogue": "deskline.evals.dataset",
    "Expectation": "deskline.evals.dataset",
    "Query": "deskline.evals.dataset",
    "export_queries": "deskline.evals.dataset",
    "load_dataset": "deskline.evals.dataset",
    "load_datasets": "deskline.evals.dataset",
    "read_queries": "deskline.evals.dataset",
    "to_dataset": "deskline.evals.dataset",
    "Scored": "deskline.evals.metrics",
    "summarise": "deskline.evals.metrics",
    "DeskChecks": "deskline.evals.runner",
    "EvalRun": "deskline.evals.runner",
    "Observed": "deskline.evals.runner",
    "RoutingAnalyses": "deskline.evals.runner",
    "evaluate": "deskline.evals.runner",
    "LoopComparison": "deskline.evals.loop",
    "Profile": "deskline.evals.loop",
    "compare_modes": "deskline.evals.loop",
    "html_report": "deskline.evals.report",
}

__all__ = [
    "DatasetError",
    "DeskChecks",
    "Dialogue",
    "EvalRun",
    "Expectation",
    "LoopComparison",
    "Observed",
    "Profile",
    "Query",
    "RoutingAnalyses",
    "Scored",
    "compare_modes",
    "evaluate",
    "export_queries",
    "html_report",
    "load_dataset",
    "load_datasets",
    "read_queries",
    "summarise",
    "to_dataset",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deskline.evals' has no attribute {name!r}")
    return getattr(import_module(module), name)

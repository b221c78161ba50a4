"""What a person reads: the terminal summary, the side-by-side comparison and the HTML report.

The HTML report is one self-contained file (no script, no external asset): the headline and
per-department tables, the routing confusion matrix drawn as an inline SVG heat map, and the
worst misroutes (the most confidently wrong first) with their texts. Query texts (and the
errors of failed turns) are masked with ``deskline.privacy.mask`` unless ``raw=True``: a report
travels further than the log it was measured on.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from deskline.evals.metrics import Difference, Scored, difference, worst_misroutes
from deskline.privacy import mask

# (label, path into the summary, better when higher?) for the headline and the comparison.
HEADLINE: tuple[tuple[str, str, bool | None], ...] = (
    ("accuracy", "accuracy", True),
    ("accuracy, answered turns", "accuracy_answered", True),
    ("macro-F1", "macro_f1", True),
    ("human recall", "per_department.human.recall", True),
    ("abstain rate", "abstain_rate", None),
    ("escalation precision", "escalation.precision", True),
    ("escalation recall", "escalation.recall", True),
    ("plan mode accuracy", "plan_mode.accuracy", True),
    ("intent accuracy", "intent.accuracy", True),
    ("entities in handoffs", "entities.pass_rate", True),
    ("grounded replies", "grounding.pass_rate", True),
    ("reply facts", "reply_facts.pass_rate", True),
    ("turns passing every check", "turns.pass_rate", True),
    ("conversations passing every turn", "conversations.pass_rate", True),
    ("model calls / query", "llm_calls.mean", False),
    ("model calls, max", "llm_calls.max", False),
    ("tokens / query", "tokens.per_query", False),
    ("cost / query (USD)", "cost_usd.per_query", False),
    ("cost, total (USD)", "cost_usd.total", False),
    ("latency p50 (ms)", "latency_ms.p50", False),
    ("latency p95 (ms)", "latency_ms.p95", False),
    ("latency p99 (ms)", "latency_ms.p99", False),
    ("failures", "failures", False),
)
Diffs = Sequence[tuple[str, Difference, bool | None]]


def pick(summary: Mapping[str, Any], path: str) -> Any:
    """A value of the summary by dotted path; lists count their items; missing is ``None``."""
    value: Any = summary
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return len(value) if isinstance(value, list) else value


def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.1f}"
    return str(value)


def label_for(share: float | None, label_map: bool = False) -> str:
    """How far the figures hold for new traffic, from the share of trained-on queries."""
    if label_map:
        return ("LABEL MAP, NOT QUERIES: each text is an intent's name; this checks the map against "
                "the router, it does not measure routing quality")
    if not share:
        return "held-out data: none of these queries is in the router's training data"
    if share >= 0.999:
        return ("TRAINED-ON DATA: every query is in the router's training data, so these "
                "routing figures overstate quality on new traffic")
    return (f"PARTLY TRAINED-ON DATA: {share:.1%} of these queries are in the router's "
            "training data; 'held_out' scores the rest")


def shown(text: str, raw: bool = False) -> str:
    """A query text as a report shows it: personal data masked unless ``raw``."""
    return text if raw else mask(text)


def print_summary(summary: Mapping[str, Any], rows: Sequence[Scored], console: Any = None, *,
                  raw: bool = False) -> None:
    """The terminal summary: headline, per-department scores, confusion matrix, worst misroutes
    (their texts masked unless ``raw``)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    run = summary.get("run", {})
    console.print(f"[bold]{summary.get('dataset', '')}[/]: {summary['n']} queries, "
                  f"{run.get('elapsed_s', 0):.2f} s, {run.get('queries_per_s', 0):,.0f} queries/s "
                  f"({run.get('engine', '')} engine)")
    colour = "yellow" if summary.get("trained_on_share") else "green"
    console.print(f"[{colour}]{summary.get('label', '')}[/]")
    head = Table("metric", "value", title="summary", title_justify="left")
    for label, path, _ in HEADLINE:
        if (value := pick(summary, path)) is not None:
            head.add_row(label, fmt(value))
    console.print(head)
    dept = Table("department", "precision", "recall", "F1", "support", "predicted",
                 title="routing by department", title_justify="left")
    for name, s in summary.get("per_department", {}).items():
        dept.add_row(name, *(fmt(s[k]) for k in ("precision", "recall", "f1", "support", "predicted")))
    console.print(dept)
    if cm := summary.get("confusion_matrix"):
        table = Table("expected \\ predicted", *cm["columns"], title="confusion matrix",
                      title_justify="left")
        for name, counts in zip(cm["rows"], cm["matrix"], strict=True):
            table.add_row(name, *(f"[bold]{c}[/]" if cm["columns"][j] == name else (str(c) if c else "·")
                                  for j, c in enumerate(counts)))
        console.print(table)
    if worst := worst_misroutes(rows, 5):
        bad = Table("text", "expected", "predicted", "confidence", title="worst misroutes",
                    title_justify="left")
        for r in worst:
            bad.add_row(shown(r.text, raw)[:70], r.expected or "", r.predicted, f"{r.confidence:.2f}")
        console.print(bad)
    if summary.get("failures"):
        console.print(f"[red]{len(summary['failures'])} turn(s) raised[/]; --json lists them")


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Difference, bool | None]]:
    """Every headline metric of two saved results (one run or several each), compared."""
    def runs(summary: Mapping[str, Any], path: str) -> list[float | None]:
        found = summary.get("runs")
        values = [r.get(path) for r in found] if found else [pick(summary, path)]
        return [v if isinstance(v, int | float) else None for v in values]

    diffs = [(label, difference(runs(a, path), runs(b, path)), better) for label, path, better in HEADLINE]
    return [d for d in diffs if d[1].a is not None or d[1].b is not None]


def print_comparison(a_name: str, b_name: str, diffs: Diffs, runs: tuple[int, int],
                     console: Any = None) -> None:
    """Two configurations side by side: means, difference, noise band and verdict per metric."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table("metric", a_name, b_name, "difference", "noise (±)", "verdict",
                  title="comparison", title_justify="left")
    for label, d, higher_better in diffs:
        verdict: str = d.verdict
        if verdict == "beyond noise" and d.delta is not None and higher_better is not None:
            better = (d.delta > 0) == higher_better
            verdict = f"[{'green' if better else 'red'}]beyond noise ({'better' if better else 'worse'})[/]"
        delta = "—" if d.delta is None else f"{d.delta:+.4g}"
        table.add_row(label, fmt(d.a), fmt(d.b), delta, fmt(d.noise), verdict)
    console.print(table)
    console.print(f"Noise: {runs[0]} and {runs[1]} run(s). A difference is beyond run-to-run noise "
                  "when it exceeds 3 standard errors of the difference of the run means; identical "
                  "runs (a deterministic desk) make any difference real; with a single run a "
                  "non-zero difference is 'unknown' (use --repeat).", style="dim")


def comparison_dict(a_name: str, b_name: str, diffs: Diffs) -> dict[str, Any]:
    return {"a": a_name, "b": b_name, "metrics": {
        label: {"a": d.a, "b": d.b, "delta": d.delta, "noise": d.noise, "verdict": d.verdict}
        for label, d, _ in diffs}}


def confusion_svg(cm: Mapping[str, Any], cell: int = 62) -> str:
    """The confusion matrix as an SVG heat map; shade is the share of the row (recall view)."""
    rows, columns, matrix = cm["rows"], cm["columns"], cm["matrix"]
    left, top = 96, 70
    width, height = left + cell * len(columns) + 10, top + cell * len(rows) + 10
    mid_x, mid_y = left + cell * len(columns) / 2, top + cell * len(rows) / 2
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" role="img" '
             'aria-label="routing confusion matrix">',
             f'<text x="{mid_x}" y="16" text-anchor="middle" font-size="13" font-weight="600">'
             'predicted</text>',
             f'<text x="14" y="{mid_y}" text-anchor="middle" font-size="13" font-weight="600" '
             f'transform="rotate(-90 14 {mid_y})">expected</text>']
    for j, name in enumerate(columns):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 10}" text-anchor="middle" '
                     f'font-size="12">{e(name)}</text>')
    for i, name in enumerate(rows):
        total = sum(matrix[i]) or 1
        y = top + i * cell
        parts.append(f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" '
                     f'font-size="12">{e(name)}</text>')
        for j, count in enumerate(matrix[i]):
            share = count / total
            x = left + j * cell
            hue = "22,163,74" if columns[j] == name else "220,38,38"
            fill = f"rgba({hue},{0.12 + 0.88 * share:.3f})" if count else "#f8fafc"
            ink = "#ffffff" if share > 0.55 else "#111827"
            shown = f"{share:.1%}" if 0 < share < 0.01 else f"{share:.0%}"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="4" '
                         f'fill="{fill}"><title>expected {e(name)}, predicted {e(columns[j])}: '
                         f'{count} ({share:.1%} of the row)</title></rect>')
            if count:
                cx = x + cell / 2 - 1
                parts.append(f'<text x="{cx}" y="{y + cell / 2}" text-anchor="middle" font-size="13" '
                             f'font-weight="600" fill="{ink}">{count}</text><text x="{cx}" '
                             f'y="{y + cell / 2 + 15}" text-anchor="middle" font-size="10" '
                             f'fill="{ink}">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #e5e7eb;padding:.3rem .6rem;text-align:left}
th{background:#f3f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:.6rem 1rem;border-radius:6px}.warn{background:#fef3c7}.ok{background:#dcfce7}
.muted{color:#6b7280;font-size:.9rem}
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    e = html.escape

    def cell(v: Any) -> str:
        numeric = isinstance(v, int | float) and not isinstance(v, bool)
        return f'<td class="n">{e(fmt(v))}</td>' if numeric else f"<td>{e(fmt(v))}</td>"

    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(summary: Mapping[str, Any], rows: Sequence[Scored], limit: int = 30, *,
                raw: bool = False) -> str:
    """The whole report as one HTML page; query texts and errors masked unless ``raw``."""
    e = html.escape
    run = summary.get("run", {})
    name = e(str(summary.get("dataset", "")))
    headline = [(label, v) for label, path, _ in HEADLINE if (v := pick(summary, path)) is not None]
    depts = [(k, v["precision"], v["recall"], v["f1"], v["support"], v["predicted"])
             for k, v in summary.get("per_department", {}).items()]
    worst = [(shown(r.text, raw), r.expected, r.predicted, round(r.confidence, 3), r.stage, r.intent)
             for r in worst_misroutes(rows, limit)]
    modes = list(summary.get("plan_mode", {}).get("counts", {}).items())
    failures = [(f["case"], f["turn"], shown(f["text"] or "", raw), shown(f["error"] or "", raw))
                for f in summary.get("failures", [])]
    subsets = [(k, summary[k]["n"], summary[k]["accuracy"], summary[k]["macro_f1"])
               for k in ("held_out", "unambiguous") if k in summary]
    cm = summary.get("confusion_matrix")
    banner = "warn" if summary.get("trained_on_share") else "ok"
    return "".join([
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>deskline eval: {name}'
        f"</title><style>{_CSS}</style></head><body><h1>deskline eval — {name}</h1>",
        f'<p class="muted">{summary["n"]} queries · {e(str(run.get("engine", "")))} engine · '
        f'{run.get("elapsed_s", 0):.2f} s · {run.get("queries_per_s", 0):,.0f} queries/s · '
        f'configuration: {e(json_ish(summary.get("config", {})))}</p>',
        f'<p class="banner {banner}">{e(str(summary.get("label", "")))}</p>',
        "<h2>Summary</h2>", _table(["metric", "value"], headline),
        "<h2>Routing by department</h2>",
        _table(["department", "precision", "recall", "F1", "support", "predicted"], depts),
        *(["<h2>Subsets</h2>", _table(["subset", "n", "accuracy", "macro-F1"], subsets)] if subsets else []),
        "<h2>Confusion matrix</h2><p class=\"muted\">Rows: the expected department; columns: what "
        "the desk did. Shade: share of the row.</p>", confusion_svg(cm) if cm else "",
        "<h2>Plan modes</h2>", _table(["mode", "turns"], modes),
        f"<h2>Worst misroutes ({len(worst)})</h2><p class=\"muted\">Wrong department, the most "
        "confident first (abstentions are counted apart).</p>",
        _table(["text", "expected", "predicted", "confidence", "stage", "intent"], worst),
        *([f"<h2>Failures ({len(failures)})</h2>",
           _table(["case", "turn", "text", "error"], failures[:limit])] if failures else []),
        "</body></html>",
    ])


def json_ish(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {fmt(v)}" for k, v in config.items())

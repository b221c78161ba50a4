"""What a person reads: the terminal summary, the side-by-side comparison and the HTML report.

The HTML report is one self-contained file (no script, no external asset): the headline and
per-department tables, the routing confusion matrix drawn as an inline SVG heat map, and the
worst misroutes (the most confidently wrong first) with their texts.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from deskline.evals.metrics import Difference, Scored, worst_misroutes

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


def print_summary(summary: Mapping[str, Any], rows: Sequence[Scored], console: Any = None) -> None:
    """The terminal summary: headline, per-department scores, confusion matrix, worst misroutes."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    run = summary.get("run", {})
    console.print(f"[bold]{summary.get('dataset', '')}[/]: {summary['n']} queries, "
                  f"{run.get('elapsed_s', 0):.2f} s, {run.get('queries_per_s', 0):,.0f} queries/s "
                  f"({run.get('engine', '')} engine)")
    console.print(f"[{'yellow' if summary.get('trained_on_share') else 'green'}]{summary.get('label', '')}[/]")
    head = Table("metric", "value", title="summary", title_justify="left")
    for label, path, _ in HEADLINE:
        value = pick(summary, path)
        if value is not None:
            head.add_row(label, fmt(value))
    console.print(head)
    dept = Table("department", "precision", "recall", "F1", "support", "predicted", title="routing by department",
                 title_justify="left")
    for name, s in summary.get("per_department", {}).items():
        dept.add_row(name, fmt(s["precision"]), fmt(s["recall"]), fmt(s["f1"]), str(s["support"]), str(s["predicted"]))
    console.print(dept)
    cm = summary.get("confusion_matrix")
    if cm:
        table = Table("expected \\ predicted", *cm["columns"], title="confusion matrix", title_justify="left")
        for name, counts in zip(cm["rows"], cm["matrix"], strict=True):
            table.add_row(name, *(f"[bold]{c}[/]" if cm["columns"][j] == name else (str(c) if c else "·")
                                  for j, c in enumerate(counts)))
        console.print(table)
    worst = worst_misroutes(rows, 5)
    if worst:
        bad = Table("text", "expected", "predicted", "confidence", title="worst misroutes", title_justify="left")
        for r in worst:
            bad.add_row(r.text[:70], r.expected or "", r.predicted, f"{r.confidence:.2f}")
        console.print(bad)
    if summary.get("failures"):
        console.print(f"[red]{len(summary['failures'])} turn(s) raised[/]; see --json for the list")


def print_comparison(a_name: str, b_name: str, diffs: Sequence[tuple[str, Difference, bool | None]],
                     note: str, console: Any = None) -> None:
    """Two configurations side by side: means, difference, noise band and verdict per metric."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table("metric", a_name, b_name, "difference", "noise (±)", "verdict", title="comparison",
                  title_justify="left")
    for label, d, higher_better in diffs:
        verdict = d.verdict
        if verdict == "beyond noise" and d.delta is not None and higher_better is not None:
            better = (d.delta > 0) == higher_better
            verdict = f"[{'green' if better else 'red'}]beyond noise ({'better' if better else 'worse'})[/]"
        delta = "—" if d.delta is None else f"{d.delta:+.4g}"
        table.add_row(label, fmt(d.a), fmt(d.b), delta, fmt(d.noise), verdict)
    console.print(table)
    console.print(note, style="dim")


def comparison_dict(a_name: str, b_name: str, diffs: Sequence[tuple[str, Difference, bool | None]]) -> dict[str, Any]:
    return {"a": a_name, "b": b_name, "metrics": {
        label: {"a": d.a, "b": d.b, "delta": d.delta, "noise": d.noise, "verdict": d.verdict}
        for label, d, _ in diffs}}


def confusion_svg(cm: Mapping[str, Any], cell: int = 62) -> str:
    """The confusion matrix as an SVG heat map; shade is the share of the row (recall view)."""
    rows, columns, matrix = cm["rows"], cm["columns"], cm["matrix"]
    left, top = 96, 70
    width, height = left + cell * len(columns) + 10, top + cell * len(rows) + 10
    e = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" role="img" '
             f'aria-label="routing confusion matrix">',
             f'<text x="{left + cell * len(columns) / 2}" y="16" text-anchor="middle" font-size="13" '
             f'font-weight="600">predicted</text>',
             f'<text x="14" y="{top + cell * len(rows) / 2}" text-anchor="middle" font-size="13" font-weight="600" '
             f'transform="rotate(-90 14 {top + cell * len(rows) / 2})">expected</text>']
    for j, name in enumerate(columns):
        parts.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 10}" text-anchor="middle" '
                     f'font-size="12">{e(name)}</text>')
    for i, name in enumerate(rows):
        total = sum(matrix[i]) or 1
        y = top + i * cell
        parts.append(f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end" font-size="12">{e(name)}</text>')
        for j, count in enumerate(matrix[i]):
            share = count / total
            x = left + j * cell
            hue = "22,163,74" if columns[j] == name else "220,38,38"
            fill = f"rgba({hue},{0.12 + 0.88 * share:.3f})" if count else "#f8fafc"
            ink = "#ffffff" if share > 0.55 else "#111827"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="4" fill="{fill}">'
                         f'<title>expected {e(name)}, predicted {e(columns[j])}: {count} ({share:.1%} of row)</title>'
                         f'</rect>')
            if count:
                parts.append(f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2}" text-anchor="middle" font-size="13" '
                             f'font-weight="600" fill="{ink}">{count}</text>'
                             f'<text x="{x + cell / 2 - 1}" y="{y + cell / 2 + 15}" text-anchor="middle" '
                             f'font-size="10" fill="{ink}">{share:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#111827;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #e5e7eb;padding:.3rem .6rem;text-align:left}
th{background:#f3f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.banner{padding:.6rem 1rem;border-radius:6px}.warn{background:#fef3c7}.ok{background:#dcfce7}
.muted{color:#6b7280;font-size:.9rem}
"""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{e(fmt(v))}</td>' if isinstance(v, int | float) and not isinstance(v, bool)
        else f"<td>{e(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_report(summary: Mapping[str, Any], rows: Sequence[Scored], limit: int = 30) -> str:
    """The whole report as one HTML page."""
    e = html.escape
    run = summary.get("run", {})
    warn = bool(summary.get("trained_on_share"))
    headline = [(label, pick(summary, path)) for label, path, _ in HEADLINE if pick(summary, path) is not None]
    depts = [(k, v["precision"], v["recall"], v["f1"], v["support"], v["predicted"])
             for k, v in summary.get("per_department", {}).items()]
    worst = [(r.text, r.expected, r.predicted, round(r.confidence, 3), r.stage, r.intent)
             for r in worst_misroutes(rows, limit)]
    modes = list(summary.get("plan_mode", {}).get("counts", {}).items())
    failures = [(f["case"], f["turn"], f["text"], f["error"]) for f in summary.get("failures", [])][:limit]
    subsets = [(name, summary[name]["n"], summary[name]["accuracy"], summary[name]["macro_f1"])
               for name in ("held_out", "unambiguous") if name in summary]
    cm = summary.get("confusion_matrix")
    return "".join([
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>deskline eval: {e(str(summary.get('dataset', '')))}</title><style>{_CSS}</style></head><body>",
        f"<h1>deskline eval — {e(str(summary.get('dataset', '')))}</h1>",
        f'<p class="muted">{summary["n"]} queries · {e(str(run.get("engine", "")))} engine · '
        f'{run.get("elapsed_s", 0):.2f} s · {run.get("queries_per_s", 0):,.0f} queries/s · '
        f'configuration: {e(str(summary.get("config", {})))}</p>',
        f'<p class="banner {"warn" if warn else "ok"}">{e(str(summary.get("label", "")))}</p>',
        "<h2>Summary</h2>", _table(["metric", "value"], headline),
        "<h2>Routing by department</h2>",
        _table(["department", "precision", "recall", "F1", "support", "predicted"], depts),
        *(["<h2>Subsets</h2>", _table(["subset", "n", "accuracy", "macro-F1"], subsets)] if subsets else []),
        "<h2>Confusion matrix</h2>",
        '<p class="muted">Rows: expected department; columns: what the desk did. Shade: share of the row.</p>',
        confusion_svg(cm) if cm else "",
        "<h2>Plan modes</h2>", _table(["mode", "turns"], modes),
        f"<h2>Worst misroutes ({len(worst)})</h2>",
        '<p class="muted">Wrong department, most confident first (abstentions are counted separately).</p>',
        _table(["text", "expected", "predicted", "confidence", "stage", "intent"], worst),
        *([f"<h2>Failures ({len(summary.get('failures', []))})</h2>",
           _table(["case", "turn", "text", "error"], failures)] if failures else []),
        "</body></html>",
    ])

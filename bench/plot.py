"""The peer comparison as an SVG bar chart (hand-written SVG, no plotting library).

    python bench/plot.py [bench/results/latest.json] [docs/peers.svg]

``bench/run.py`` calls ``peers_svg`` after its peers section; this script redraws the chart from a
saved results file. Bars: median µs per turn (log scale), one per framework, fastest first; a tick
marks p99; deskline's rows are highlighted.
"""

from __future__ import annotations

import json
import math
import sys
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HIGHLIGHT, PEER, BASE = "#d9480f", "#4c6ef5", "#adb5bd"


def _fmt_us(us: float) -> str:
    if us >= 1000:
        return f"{us / 1000:,.2f} ms"
    return f"{us:,.0f} µs"


def peers_svg(rows: dict[str, dict[str, Any]], fastest: str | None = None, title_note: str = "",
              targets: tuple[tuple[float, str], ...] = ((0.8, "model-path target"), (0.05, "default target"))) -> str:
    """``rows``: framework -> {median_us, p99_us, model_calls_per_turn, x_fastest_median?, version?}.

    ``targets``: (ratio to the fastest peer, label) drawn as dashed lines."""
    data = sorted(((k, v) for k, v in rows.items() if "median_us" in v), key=lambda kv: kv[1]["median_us"])
    if not data:
        raise ValueError("no rows to plot")
    left, right, top, bar_h, gap = 340, 230, 84, 26, 12
    width = 1100
    plot_w = width - left - right
    height = top + len(data) * (bar_h + gap) + 76
    lo = 10 ** math.floor(math.log10(min(v["median_us"] for _, v in data)))
    hi = max(v["median_us"] for _, v in data) * 4

    def x(us: float) -> float:
        return left + plot_w * (math.log10(max(us, lo)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="13">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="24" font-size="16" font-weight="bold">Orchestration overhead per customer turn '
           f'(instant fake model)</text>',
           f'<text x="{left}" y="44" fill="#555">median µs per triage → specialist → tool → answer turn, log scale; '
           f'tick = p99. {escape(title_note)}</text>']
    decade = lo
    while decade <= hi:
        gx = x(decade)
        out.append(f'<line x1="{gx:.1f}" y1="{top - 6}" x2="{gx:.1f}" y2="{height - 64}" stroke="#e9ecef"/>')
        out.append(f'<text x="{gx:.1f}" y="{height - 48}" text-anchor="middle" fill="#555">{_fmt_us(decade)}</text>')
        decade *= 10
    ref = rows.get(fastest or "", {}).get("median_us")
    for k, (ratio, label) in enumerate(targets if ref else ()):
        tx = x(ratio * ref)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - 64}" stroke="{HIGHLIGHT}" '
                   f'stroke-dasharray="5,4" stroke-width="1.5"/>')
        out.append(f'<text x="{tx:.1f}" y="{top - 12 - 13 * (k % 2)}" text-anchor="middle" fill="{HIGHLIGHT}" '
                   f'font-size="11">{escape(label)} ({ratio:g}× {escape(str(fastest))})</text>')
    for i, (name, v) in enumerate(data):
        y = top + i * (bar_h + gap)
        color = HIGHLIGHT if name.startswith("deskline") else BASE if name == "baseline" else PEER
        weight = "bold" if name.startswith("deskline") else "normal"
        calls = v.get("model_calls_per_turn")
        label = name + (f" ({calls:g} model calls)" if calls is not None else "")
        out.append(f'<text x="{left - 10}" y="{y + bar_h * 0.68:.1f}" text-anchor="end" font-weight="{weight}">'
                   f'{escape(label)}</text>')
        bx = x(v["median_us"])
        out.append(f'<rect x="{left}" y="{y}" width="{max(1.0, bx - left):.1f}" height="{bar_h}" fill="{color}" '
                   f'rx="2"><title>{escape(name)}: median {v["median_us"]:,.0f} µs, p99 '
                   f'{(v.get("p99_us") or 0):,.0f} µs</title></rect>')
        if v.get("p99_us"):
            px = x(v["p99_us"])
            out.append(f'<line x1="{px:.1f}" y1="{y + 4}" x2="{px:.1f}" y2="{y + bar_h - 4}" stroke="#212529" '
                       f'stroke-width="2"/>')
        ratio = v.get("x_fastest_median")
        extra = f"  ({ratio:.3f}× {fastest})" if ratio is not None and fastest and name != fastest else ""
        tx = min(max(bx, x(v.get("p99_us") or 0)) + 8, width - right + 20)
        out.append(f'<text x="{tx:.1f}" y="{y + bar_h * 0.68:.1f}" font-weight="{weight}">'
                   f'{_fmt_us(v["median_us"])}{escape(extra)}</text>')
    out.append(f'<text x="20" y="{height - 24}" fill="#555">orange: deskline (model path: 2 model calls through the '
               f'litellm Router; default: local classifier + templates, 0 calls); blue: peers (3 calls a turn);</text>')
    out.append(f'<text x="20" y="{height - 8}" fill="#555">grey: plain asyncio floor. Event log on in-memory SQLite. '
               f'Same process-per-framework harness, same run (../shared/bench/peers).</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench" / "results" / "latest.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else REPO / "docs" / "peers.svg"
    doc = json.loads(src.read_text(encoding="utf-8"))
    peers = doc["sections"]["peers"]
    note = f"{doc['generated_utc']}"
    load = peers["rows"].get(peers["fastest_peer"], {}).get("loadavg")
    if load:
        note += f", load {load[0]:.2f}"
    dst.write_text(peers_svg(peers.get("plot_rows") or peers["rows"], peers["fastest_peer"], note), encoding="utf-8")
    print(f"wrote {dst}")


if __name__ == "__main__":
    main()

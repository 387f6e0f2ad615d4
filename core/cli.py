"""The `dziri` command line. Every DziriError becomes one line on stderr and exit 1."""

from __future__ import annotations

import json
import sys
from functools import cached_property
from pathlib import Path

import click

from dziri.training.cli import data, evaluate, export, train

from . import apikeys as apikeys_core
from . import registry, search, transfer
from .app import App
from .config import load_config, masked
from .errors import DziriError, NotFoundError, PluginError
from .models import MessageStatus
from .roles import new_plugin_manager, register


class DziriGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DziriError as exc:
            raise click.ClickException(str(exc)) from None


class Session:
    """Created per invocation; the App (and so the plugins) only when a command needs it."""

    def __init__(self, config_path: str | None):
        self.config_path = config_path

    @cached_property
    def app(self) -> App:
        return App(load_config(self.config_path))


@click.group(cls=DziriGroup)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar=None,
              help="Path to dziri.toml (default: $DZIRI_CONFIG, ./dziri.toml, the user config dir).")
@click.version_option(package_name="dziri")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """dziri: a chatbot that understands Algerian Darija."""
    session = Session(config_path)
    ctx.obj = session
    ctx.call_on_close(lambda: session.__dict__.get("app") and session.app.close())


def get_app() -> App:
    """The application of the running `dziri` command, for the commands that plugins add
    with `register_commands`: `.config`, `.store`, `.backend`, `.translator` and `.chat`
    (the ChatService; `.chat.local_user()` is the command line's user). Created on first
    use with the command's --config, and closed when the command ends."""
    context = click.get_current_context(silent=True)
    session = context.find_object(Session) if context else None
    if session is None:
        raise PluginError("get_app() works only inside a running `dziri` command")
    return session.app


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(session: Session, as_json: bool) -> None:
    """List installed plugins per role, the active one, and load errors."""
    config = load_config(session.config_path)
    report = registry.describe_installed({role: getattr(config, role).use for role in registry.NAMESPACES})
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for role in registry.NAMESPACES:
        click.echo(f"{role} (active: {report[role]['active']})")
        for plugin in report[role]["plugins"]:
            marker = "*" if plugin["active"] else " "
            where = plugin["entry_point"] or ""
            problem = f"  ERROR: {plugin['error']}" if plugin["error"] else ""
            click.echo(f"  {marker} {plugin['name']:<14} {where}{problem}")
    extensions = report["extensions"]["plugins"]
    click.echo("extensions" + ("" if extensions else " (none)"))
    for plugin in extensions:
        problem = f"  ERROR: {plugin['error']}" if plugin["error"] else ""
        click.echo(f"    {plugin['name']}{problem}")


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def show_config(session: Session, as_json: bool) -> None:
    """Print the effective configuration (file + environment), secrets masked."""
    config = load_config(session.config_path)
    data = masked(config.model_dump(mode="json"))
    source = config.__dict__.get("source_file")
    if as_json:
        click.echo(json.dumps({"source_file": str(source) if source else None, "config": data}, indent=2))
        return
    click.echo(f"# from {source or 'defaults (no dziri.toml found)'} and DZIRI_* environment variables")
    click.echo(to_toml(data))


def to_toml(data: dict, table: str = "") -> str:
    """Render nested config data as TOML (enough for printing the config)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((f"{table}.{key}" if table else key, value))
        else:
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    out = ([f"[{table}]"] if table and (lines or not tables) else []) + lines
    for name, value in tables:
        out += ["", to_toml(value, name)]
    return "\n".join(out).strip("\n")


@cli.command()
@click.argument("message", required=False)
@click.option("--conversation", "conversation_id", help="Continue this conversation.")
@click.option("--new", "start_new", is_flag=True, help="Start a new conversation (interactive mode "
              "otherwise continues the most recent one).")
@click.option("--max-tokens", type=click.IntRange(min=1), help="Longest reply, in tokens.")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Sampling temperature.")
def chat(message: str | None, conversation_id: str | None, start_new: bool,
         max_tokens: int | None, temperature: float | None) -> None:
    """Chat with the model. With MESSAGE: print one reply and exit."""
    if conversation_id and start_new:
        raise click.UsageError("--conversation and --new cannot be used together")
    app = get_app()
    user = app.chat.local_user()
    overrides = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    # None lets each conversation's own settings apply; an option given here wins over them.
    options = app.chat.default_options(**overrides) if overrides else None
    if conversation_id:
        app.store.get_conversation(user.id, conversation_id)  # fail before anything else if unknown
    if message is not None:
        conversation = _stream_reply(app, user.id, message, conversation_id, options, interactive=False)
        click.echo(f"(conversation {conversation}; continue with --conversation {conversation})", err=True)
        return
    if not conversation_id and not start_new:
        latest = app.store.list_conversations(user.id, limit=1)
        conversation_id = latest[0].id if latest else None
    _interactive(app, user.id, conversation_id, options)


def _stream_reply(app: App, user_id: str, text: str, conversation_id: str | None, options,
                  regenerate: bool = False, interactive: bool = True) -> str:
    """Print a reply as it streams; Ctrl+C stops it (the partial reply is stored)."""
    stream = (app.chat.regenerate(user_id, conversation_id, options) if regenerate
              else app.chat.send(user_id, text, conversation_id, options))
    try:
        for piece in stream:
            click.echo(piece, nl=False)
    except KeyboardInterrupt:
        stream.close()
        click.echo("\n[stopped; the partial reply is saved]", err=True)
        if not interactive:
            raise SystemExit(130) from None  # the shell's convention for Ctrl+C
        return stream.conversation.id
    click.echo()
    if stream.message and stream.message.status != MessageStatus.COMPLETE:
        click.echo(f"[reply {stream.message.status.value}]", err=True)
    return stream.conversation.id


def _interactive(app: App, user_id: str, conversation_id: str | None, options) -> None:
    info = app.backend.model_info()
    where = f"conversation {conversation_id}" if conversation_id else "a new conversation"
    click.echo(f"dziri · {info.name} via {info.backend} · {where}")
    click.echo("Type a message. /new starts a conversation, /regen redoes the last reply, "
               "Ctrl+C stops a reply, Ctrl+D or /quit leaves.")
    while True:
        try:
            text = input("you> ")
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return
        command = text.strip()
        if not command:
            continue
        if command == "/quit":
            return
        if command == "/new":
            conversation_id = None
            click.echo("(new conversation)")
            continue
        try:
            click.echo("dziri> ", nl=False)
            if command == "/regen":
                if not conversation_id:
                    click.echo("\n(nothing to regenerate yet)")
                    continue
                _stream_reply(app, user_id, "", conversation_id, options, regenerate=True)
            else:
                conversation_id = _stream_reply(app, user_id, text, conversation_id, options)
        except DziriError as exc:  # a bad message should not end the session
            click.echo(f"\nError: {exc}", err=True)


@cli.group()
def conversations() -> None:
    """List, show and delete the local user's conversations."""


@conversations.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option("--json", "as_json", is_flag=True)
def list_conversations(limit: int, offset: int, as_json: bool) -> None:
    """Most recently updated first."""
    app = get_app()
    user = app.chat.local_user()
    items = app.store.list_conversations(user.id, limit=limit, offset=offset)
    if as_json:
        click.echo(json.dumps([c.model_dump(mode="json") for c in items], indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo("no conversations yet: try  dziri chat \"wach rak?\"")
    for c in items:
        click.echo(f"{c.id}  {c.updated_at:%Y-%m-%d %H:%M}  {c.title}")


@conversations.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@click.option("--json", "as_json", is_flag=True)
def search_conversations(text: str, limit: int, offset: int, as_json: bool) -> None:
    """Your messages with every word of TEXT (or a word starting so), newest first."""
    app = get_app()
    found = search.hits(app.store, app.chat.local_user().id, text, limit, offset)
    if as_json:
        click.echo(json.dumps([hit.to_json() for hit in found], indent=2, ensure_ascii=False))
        return
    if not found:
        click.echo(f"nothing found for {text!r}")
    # Matches in bold on a terminal, [in brackets] elsewhere.
    marks = ("\033[1m", "\033[0m") if click.get_text_stream("stdout").isatty() else ("[", "]")
    for hit in found:
        title = hit.conversation.title or "(untitled)"
        click.echo(f"{hit.conversation.id}  {hit.message.timestamp:%Y-%m-%d %H:%M}  {title}")
        click.echo(f"    {hit.message.role.value}: {hit.marked(*marks)}")


@conversations.command("show")
@click.argument("conversation_id")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def show_conversation(conversation_id: str, limit: int, as_json: bool) -> None:
    """Print a conversation's messages."""
    app = get_app()
    user = app.chat.local_user()
    conversation = app.store.get_conversation(user.id, conversation_id)
    messages = app.store.list_messages(user.id, conversation.id, limit=limit)
    if as_json:
        payload = {"conversation": conversation.model_dump(mode="json"),
                   "messages": [m.model_dump(mode="json") for m in messages]}
        click.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    click.echo(f"# {conversation.title}  ({conversation.id})")
    for m in messages:
        flag = "" if m.status == MessageStatus.COMPLETE else f" [{m.status.value}]"
        figures = f" ({m.tokens} tokens{f', {m.tokens_per_second:g} tokens/s' if m.tokens_per_second else ''})" \
            if m.tokens is not None else ""
        click.echo(f"{m.role.value}{flag}{figures}: {m.content}")


@conversations.command("settings")
@click.argument("conversation_id")
@click.option("--system-prompt", help="Its own system prompt (\"\" for the served one).")
@click.option("--temperature", type=click.FloatRange(0, 2), help="Its own temperature.")
@click.option("--reset", is_flag=True, help="Back to the served system prompt and temperature.")
def conversation_settings(conversation_id: str, system_prompt: str | None, temperature: float | None,
                          reset: bool) -> None:
    """Show or change a conversation's own system prompt and temperature."""
    app = get_app()
    user = app.chat.local_user()
    conversation = app.store.get_conversation(user.id, conversation_id)
    if reset and (system_prompt is not None or temperature is not None):
        raise click.UsageError("--reset cannot be used with --system-prompt or --temperature")
    if reset or system_prompt is not None or temperature is not None:
        prompt = "" if reset else conversation.system_prompt if system_prompt is None else system_prompt
        chosen = None if reset else (conversation.temperature if temperature is None else temperature)
        conversation = app.store.update_conversation_settings(user.id, conversation.id, prompt, chosen)
    served = app.config.chat
    own_temperature = conversation.temperature
    click.echo(f"system prompt: {conversation.system_prompt or f'(served) {served.system_prompt}'}")
    click.echo(f"temperature: {own_temperature if own_temperature is not None else f'(served) {served.temperature:g}'}")


@conversations.command("export")
@click.argument("conversation_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Every conversation, newest first.")
@click.option("--format", "kind", type=click.Choice(["json", "md"]), default="json", show_default=True,
              help="json: for `dziri conversations import` (exact); md: for reading.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write here instead of stdout.")
def export_conversations(conversation_id: str | None, everything: bool, kind: str, out: str | None) -> None:
    """Write a conversation (or --all) as JSON or Markdown."""
    if bool(conversation_id) == everything:
        raise click.UsageError("give a CONVERSATION_ID or --all")
    app = get_app()
    user = app.chat.local_user()
    data = transfer.export(app.store, user.id, None if everything else [conversation_id])
    text = transfer.to_markdown(data) if kind == "md" else json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(data['conversations'])} conversation(s) to {out}", err=True)
    else:
        click.echo(text, nl=False)


@conversations.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--again", is_flag=True, help="Import it even though it was imported before.")
def import_conversations(file: str, again: bool) -> None:
    """Bring conversations in from a `dziri conversations export` JSON file (checked whole
    first: a bad file changes nothing)."""
    app = get_app()
    stored = transfer.import_file(app.store, app.chat.local_user().id, Path(file).read_bytes(), again=again)
    for conversation in stored:
        click.echo(f"{conversation.id}  {conversation.title}")
    click.echo(f"imported {len(stored)} conversation(s)", err=True)


@conversations.command("delete")
@click.argument("conversation_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_conversation(conversation_id: str, yes: bool) -> None:
    """Delete a conversation and its messages."""
    app = get_app()
    user = app.chat.local_user()
    conversation = app.store.get_conversation(user.id, conversation_id)
    if not yes and not click.confirm(f"Delete '{conversation.title}'?", default=False):
        raise click.Abort()
    app.store.delete_conversation(user.id, conversation.id)
    click.echo(f"deleted {conversation.id}")


@cli.group()
def apikeys() -> None:
    """Keys for dziri's OpenAI-compatible API (/v1): create, list, revoke."""


def _user_named(app: App, username: str):
    user = app.store.find_user(username)
    if user is None:
        raise NotFoundError(f"no user named {username!r}")
    return user


@apikeys.command("create")
@click.argument("username")
@click.option("--name", default="", help="What the key is for (shown in lists).")
def create_api_key(username: str, name: str) -> None:
    """Make a key for USERNAME and print it, once: it is kept only as a hash."""
    app = get_app()
    key, secret = apikeys_core.create_key(app.store, _user_named(app, username).id, name)
    click.echo(secret)
    click.echo(f"(key {key.id}{f' {key.name!r}' if key.name else ''}: shown this once, copy it now;"
               f" use it as  Authorization: Bearer <key>)", err=True)


@apikeys.command("list")
@click.argument("username")
@click.option("--json", "as_json", is_flag=True)
def list_api_keys(username: str, as_json: bool) -> None:
    """USERNAME's keys, newest first (their first characters, never the keys)."""
    app = get_app()
    keys = app.store.list_api_keys(_user_named(app, username).id)
    if as_json:
        click.echo(json.dumps([apikeys_core.key_json(k) for k in keys], indent=2, ensure_ascii=False))
        return
    if not keys:
        click.echo(f"no keys yet: dziri apikeys create {username}")
    for key in keys:
        click.echo(f"{key.id}  {key.prefix}…  {key.created_at:%Y-%m-%d %H:%M}  {key.name}")


@apikeys.command("revoke")
@click.argument("username")
@click.argument("key_id")
def revoke_api_key(username: str, key_id: str) -> None:
    """Revoke one of USERNAME's keys: it stops working at once, on every server."""
    app = get_app()
    app.store.delete_api_key(_user_named(app, username).id, key_id)
    click.echo(f"revoked {key_id}")


@cli.command()
@click.option("--host", help="Address to listen on (default: web.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: web.port, 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes; each loads its own model.")
@click.pass_obj
def serve(session: Session, host: str | None, port: int | None, workers: int) -> None:
    """Serve the chat site and its API (uvicorn, Django)."""
    from dziri.django_host.server import serve as run_server  # Django loads only for this command

    run_server(session.config_path, host, port, workers)


cli.add_command(data)  # `dziri data clean|translate`: the training pipeline's data steps
cli.add_command(evaluate)  # `dziri eval`: chrF and BLEU of the backend's translations, with or without the adapter
cli.add_command(train)  # `dziri train`: fine-tune a LoRA adapter (peft on the CPU, unsloth on a GPU)
cli.add_command(export)  # `dziri export`: the trained adapter as a GGUF LoRA, merged GGUF, Modelfile


def _add_plugin_commands() -> None:
    pm = new_plugin_manager()
    for name, plugin in registry.load_extensions().plugins.items():
        try:
            register(pm, plugin, name, role=None)
        except DziriError as exc:
            click.echo(f"warning: {exc}", err=True)
    pm.hook.register_commands(cli=cli)


def main() -> None:
    _add_plugin_commands()
    try:
        cli(prog_name="dziri")
    except DziriError as exc:  # raised outside a command, e.g. while closing
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)

"""`dziri data …`: the data steps of the training pipeline. Only click is imported here;
each command imports its module when it runs, so `dziri --help` stays fast."""

from __future__ import annotations

import contextlib
import json
import sys

import click

FORMATS = ("json", "jsonl", "csv", "tsv", "txt", "hf")  # as in training/sources.py


@click.group()
def data() -> None:
    """Prepare training data: clean raw Darija texts, then translate them."""


@data.command()
@click.argument("source", metavar="IN")
@click.argument("output", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Input format (default: from the file name; owner/name or hf:name is a Hugging Face dataset).")
@click.option("--column", help="The field or column that holds the text (default: detected).")
@click.option("--split", default="train", show_default=True, help="Split of a Hugging Face dataset.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def clean(source: str, output: str, fmt: str | None, column: str | None, split: str, as_json: bool) -> None:
    """Clean raw texts from IN into OUT as {"segments": [{"id", "text"}]}.

    IN is a JSON, JSONL, CSV, TSV or text file, or a Hugging Face dataset name (needs
    pip install 'dziri[train]'). Removes links, @mentions, emojis, hashtag signs, extra
    whitespace, empty lines and duplicates; keeps Arabic script, Latin script with its
    accents and every digit (Arabizi: 3lach, 7aja, 9lbi). Ids are a hash of the text.
    """
    from .clean import clean_file

    report = clean_file(source, output, fmt=fmt, column=column, split=split)
    click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else report.render())


@data.command()
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False))
@click.argument("output", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--limit", type=click.IntRange(min=0), help="Translate at most this many more segments.")
@click.option("--batch-size", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Segments per translator call (and per checkpoint write).")
@click.option("--source-language", default="Algerian Arabic (Darija)", show_default=True)
@click.option("--target-language", default="English", show_default=True)
@click.option("--max-failed-batches", type=click.IntRange(min=1), default=3, show_default=True,
              help="Stop after this many batches fail in a row (a spent quota, a dead server).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def translate(source: str, output: str, limit: int | None, batch_size: int, source_language: str,
              target_language: str, max_failed_batches: int, as_json: bool) -> None:
    """Add a translation to every segment of IN, through the configured translator, into OUT.

    Crash-safe: finished batches go to OUT.partial.jsonl as they arrive; run the same
    command again after a crash, a Ctrl+C or a failure and only what is missing is sent.
    Exits 1 when segments failed (listed, with the reason).
    """
    from dziri.core.errors import TranslatorError

    from .checkpoint import checkpoint_path
    from .translate import translate_file

    try:
        report = translate_file(source, output, _translator, batch_size=batch_size, limit=limit,
                                source_language=source_language, target_language=target_language,
                                max_failed_batches=max_failed_batches)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted: finished batches are kept in {checkpoint_path(output)}; "
                   "run the same command again to go on", err=True)
        raise SystemExit(130) from None
    click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if as_json else report.render())
    if report.failed or report.stopped:
        raise TranslatorError(
            f"{report.failed} segment(s) failed to translate{' and the run stopped early' if report.stopped else ''}"
            f"; {output} holds the {report.total - report.missing} translated so far: run the same command "
            "again to retry only the missing ones"
        )


def _translator():
    """The App's translator: the one in `dziri`'s session, or a fresh App when this group
    runs on its own."""
    ctx = click.get_current_context()
    session = ctx.find_root().obj
    if session is not None and hasattr(session, "app"):
        return session.app.translator
    from dziri.core.app import App

    app = App()
    ctx.call_on_close(app.close)
    return app.translator


@click.command()
@click.argument("adapter_dir", metavar="[ADAPTER_DIR]", required=False, type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="The GGUF LoRA adapter to write (load it with backend.llamacpp.adapter_path).")
@click.option("--base", help="The base model the adapter was trained on: gemma3-270m, smollm2-135m or a GGUF "
                             "path (default: the one training.json names).")
@click.option("--merged", type=click.Path(dir_okay=False), help="Also write the base with the adapter merged in.")
@click.option("--merged-type", type=click.Choice(["f32", "q8_0"]), default="q8_0", show_default=True,
              help="Tensor type of the merged GGUF.")
@click.option("--modelfile", type=click.Path(dir_okay=False), help="Also write an Ollama Modelfile (FROM the base, "
                                                                   "ADAPTER the GGUF LoRA).")
def export(adapter_dir: str | None, out: str, base: str | None, merged: str | None, merged_type: str,
           modelfile: str | None) -> None:
    """Turn a trained LoRA adapter (PEFT, from `dziri train`) into a GGUF LoRA for llama.cpp
    and Ollama; optionally a merged GGUF and an Ollama Modelfile.

    ADAPTER_DIR is the adapter folder or the training output holding adapter/ (default:
    the newest finished run under <data dir>/training). The base GGUF must be the very
    file the adapter was trained on; training.json next to the adapter says which, and is
    checked.
    """
    from pathlib import Path

    from dziri.core.errors import TrainingError
    from dziri.plugins.backends.bundled import BUNDLED_MODELS

    from .export import (
        adapter_directory,
        export_lora_gguf,
        latest_training_output,
        merge_gguf,
        read_training_info,
        resolve_base,
        write_modelfile,
    )

    if adapter_dir is None:
        adapter_dir = latest_training_output(_data_dir())
    directory = adapter_directory(adapter_dir)
    base_gguf = resolve_base(directory, base)
    for target in (out, merged, modelfile):
        if target and Path(target).resolve() == base_gguf.resolve():
            raise TrainingError(f"{target} is the base model itself: write the output to another file")
    written = [export_lora_gguf(directory, base_gguf, out, progress=None)]
    if merged:
        written.append(merge_gguf(base_gguf, directory, merged, merged_type, progress=None))
    if modelfile:
        info = read_training_info(directory) or {}
        base_name = info.get("base") or base
        written.append(write_modelfile(modelfile, base_gguf, Path(out),
                                       base_hint=base_name if base_name in BUNDLED_MODELS else None))
    click.echo(f"adapter {directory} on base {base_gguf}:")
    for path in written:
        click.echo(f"  wrote {path} ({_size(path.stat().st_size)})")


def _data_dir():
    from dziri.core.cli import Session
    from dziri.core.config import load_config

    session = click.get_current_context().find_object(Session)
    return load_config(session.config_path if session else None).resolved_data_dir()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} GB"


@click.command("eval")
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(["translation", "chat"]), default="translation", show_default=True,
              help="translation: chrF and BLEU of Darija → English; chat: how the served chat answers conversations.")
@click.option("--adapter", type=click.Path(dir_okay=False),
              help="Serve this GGUF LoRA adapter (llama.cpp backend), instead of the configured one.")
@click.option("--no-adapter", is_flag=True, help="Serve the base model alone (llama.cpp backend).")
@click.option("--both", is_flag=True,
              help="Evaluate the base model and the adapter (the configured one, or --adapter) side by side.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N items only.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Per-item outputs, JSONL (default: ./<DATA stem>.eval.jsonl).")
@click.option("--max-tokens", type=click.IntRange(min=1),
              help="The longest reply generated (default: 128 for a translation, [chat] max_tokens for a chat).")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def evaluate(data: str, task: str, adapter: str | None, no_adapter: bool, both: bool, limit: int | None,
             out: str | None, max_tokens: int | None, as_json: bool) -> None:
    """Score the configured backend on DATA.

    --task translation (default): DATA holds {"id", "text", "translation"} segments (JSON or
    JSONL, as `dziri data translate` writes them), e.g. data/darija-en/test.json. Each text
    is asked with the prompt training uses, greedily; the first line of the reply is scored
    against the translation with chrF and BLEU.

    --task chat: DATA holds conversations (JSONL, e.g. data/darija-chat/test.jsonl): the user
    turns, the language they are in, and what a good last reply holds (memory strings,
    keywords). The user turns go through the chat service with the served settings; the last
    reply is checked for language and script, memory, topic, echo, translation and looping.

    Writes each item's outputs to --out.
    """
    from pathlib import Path

    from dziri.core.config import load_config
    from dziri.core.errors import ValidationError

    from .evaluate import default_output, system_configs, write_outputs
    from .evaluate import evaluate as run_evaluation

    session = click.get_current_context().find_root().obj
    config = load_config(getattr(session, "config_path", None))
    target = Path(out or default_output(data))
    if target.resolve() == Path(data).resolve():
        raise ValidationError(f"--out {target} is the data file itself: choose another file for the outputs")
    configs = system_configs(config, adapter, no_adapter, both)
    if task == "chat":
        from .chat_eval import evaluate_chat, write_chat_outputs

        result = evaluate_chat(data, configs, limit=limit, max_tokens=max_tokens)
        written = write_chat_outputs(result, target)
    else:
        result = run_evaluation(data, configs, limit=limit, max_tokens=max_tokens or 128)
        written = write_outputs(result, target)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "out": str(written)}, indent=2, ensure_ascii=False))
    else:
        click.echo(result.render())
        click.echo(f"per-item outputs: {written}")


@click.command()
@click.argument("data", metavar="[DATA]", required=False, type=click.Path(dir_okay=False))
@click.option("--chat", "chat_data", type=click.Path(dir_okay=False),
              help="Conversations to learn chatting from, JSONL (default: [training] chat_data).")
@click.option("--engine", type=click.Choice(["peft", "unsloth"]), help="peft (CPU, default) or unsloth (NVIDIA GPU).")
@click.option("--base", "base_model", help="Base model: gemma3-270m (default), smollm2-135m or a GGUF file "
                                           "(unsloth: a model name or folder).")
@click.option("--out", "output_dir", type=click.Path(file_okay=False),
              help="Output folder (default: <data dir>/training/<base>).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True))
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many optimizer steps.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--lora-r", type=click.IntRange(min=1), help="LoRA rank.")
@click.option("--lora-alpha", type=click.IntRange(min=1), help="LoRA alpha (the update is scaled by alpha/r).")
@click.option("--max-length", type=click.IntRange(min=16), help="Tokens per example (or packed block).")
@click.option("--translation-share", type=click.FloatRange(0, 1, max_open=True),
              help="Share of translation examples among all when there are conversations too.")
@click.option("--packing/--no-packing", default=None, help="Pack short examples into blocks (default: on).")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]),
              help="CPU engine: bf16 autocast or fp32 (default auto: bf16 where the CPU has bf16 instructions).")
@click.option("--quantization", type=click.Choice(["none", "4bit"]), help="4bit: QLoRA (unsloth engine only).")
@click.option("--restart", is_flag=True, help="Discard an earlier run in the output folder and start afresh.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def train(data: str | None, restart: bool, as_json: bool, **overrides) -> None:
    """Fine-tune a LoRA adapter on translated pairs (DATA) and conversations (--chat).

    Splits off held-out pairs and conversations (never trained on; written to heldout.json
    and heldout-chat.jsonl), builds Darija→English and English→Darija examples from the
    pairs and multi-turn chats under the served system prompt ([chat] system_prompt) from
    the conversations, and trains with trl's SFTTrainer, the loss on every reply. Checkpoints
    as it goes: run the same command again after a crash or Ctrl+C and it resumes. Then:
    dziri export, dziri eval.
    """
    from dziri.core.config import TrainingSettings, load_config
    from dziri.core.errors import ConfigError

    from .sft import train as run_training

    session = click.get_current_context().find_root().obj
    config = load_config(getattr(session, "config_path", None))
    chosen = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings = TrainingSettings(**{**config.training.model_dump(exclude_unset=True), **chosen})
    except ValueError as exc:
        raise ConfigError(f"invalid training settings: {exc}") from None
    try:
        # The Trainer prints its loss lines to stdout; they go with the progress bar to stderr,
        # so stdout holds the report alone (--json reads as JSON).
        with contextlib.redirect_stdout(sys.stderr):
            report = run_training(data, settings, config.resolved_data_dir(), restart=restart,
                                  chat_path=settings.chat_data or None, system_prompt=config.chat.system_prompt)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: run the same command again to resume from the last checkpoint", err=True)
        raise SystemExit(130) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())

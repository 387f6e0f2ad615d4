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
@click.option("--adapter", type=click.Path(dir_okay=False),
              help="Serve this GGUF LoRA adapter (llama.cpp backend), instead of the configured one.")
@click.option("--no-adapter", is_flag=True, help="Serve the base model alone (llama.cpp backend).")
@click.option("--both", is_flag=True,
              help="Evaluate the base model and the adapter (the configured one, or --adapter) side by side.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate the first N segments only.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Per-segment outputs, JSONL (default: ./<DATA stem>.eval.jsonl).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="The longest translation generated.")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
def evaluate(data: str, adapter: str | None, no_adapter: bool, both: bool, limit: int | None, out: str | None,
             max_tokens: int, as_json: bool) -> None:
    """Score Darija → English translations of the configured backend: chrF and BLEU.

    DATA holds {"id", "text", "translation"} segments (JSON or JSONL, as `dziri data
    translate` writes them), e.g. data/darija-en/test.json. Each text is asked with the
    prompt training uses, greedily; the first line of the reply is scored against the
    translation. Writes each segment's hypotheses to --out.
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
    result = run_evaluation(data, configs, limit=limit, max_tokens=max_tokens)
    written = write_outputs(result, target)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "out": str(written)}, indent=2, ensure_ascii=False))
    else:
        click.echo(result.render())
        click.echo(f"per-segment outputs: {written}")


@click.command()
@click.argument("data", metavar="DATA", type=click.Path(dir_okay=False))
@click.option("--engine", type=click.Choice(["peft", "unsloth"]), help="peft (CPU, default) or unsloth (NVIDIA GPU).")
@click.option("--base", "base_model", help="Base model: gemma3-270m (default), smollm2-135m or a GGUF file "
                                           "(unsloth: a model name or folder).")
@click.option("--out", "output_dir", type=click.Path(file_okay=False),
              help="Output folder (default: <data dir>/training/<base>).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True))
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many optimizer steps.")
@click.option("--batch-size", type=click.IntRange(min=1))
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True))
@click.option("--max-length", type=click.IntRange(min=16), help="Tokens per example (or packed block).")
@click.option("--packing/--no-packing", default=None, help="Pack short examples into blocks (default: on).")
@click.option("--quantization", type=click.Choice(["none", "4bit"]), help="4bit: QLoRA (unsloth engine only).")
@click.option("--restart", is_flag=True, help="Discard an earlier run in the output folder and start afresh.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def train(data: str, restart: bool, as_json: bool, **overrides) -> None:
    """Fine-tune a LoRA adapter on the translated segments in DATA ([training] in the config).

    Splits off held-out segments (never trained on; written to heldout.json), builds
    Darija→English, English→Darija and chat examples, and trains with trl's SFTTrainer,
    loss on the answers only. Checkpoints as it goes: run the same command again after a
    crash or Ctrl+C and it resumes. Then: dziri export, dziri eval.
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
            report = run_training(data, settings, config.resolved_data_dir(), restart=restart)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: run the same command again to resume from the last checkpoint", err=True)
        raise SystemExit(130) from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())

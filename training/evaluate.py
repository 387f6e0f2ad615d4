"""`dziri eval`: how well the configured backend translates Darija into English, as chrF
and BLEU (sacrebleu) against reference translations.

Each segment is asked with the one prompt that training uses
(`instructions.translation_messages`), greedily (temperature 0, a fixed seed), and the
reply's first non-blank line is the hypothesis: a base model that rambles past its
translation is read the same way as a tuned one that stops. Generation stops at the end
of the model's turn (the backend's chat format) or as soon as that first line is complete.

On the llama.cpp backend the adapter can be swapped per run (`--adapter`, `--no-adapter`),
and `--both` scores the base model and the adapter side by side in one run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dziri.core.config import DziriConfig
from dziri.core.errors import ConfigError, DziriError, ValidationError
from dziri.core.models import GenerationOptions, Segment

from .instructions import translation_messages
from .segments import read_segments, write_atomically

LLAMACPP = "llamacpp"
BASE, ADAPTER = "base", "adapter"
MAX_TOKENS = 128
SEED = 0


@dataclass(frozen=True)
class Scores:
    chrf: float
    bleu: float


@dataclass
class SystemResult:
    name: str
    scores: Scores
    hypotheses: list[str]
    model: str = ""
    adapter: str = ""


@dataclass
class Evaluation:
    data: Path
    segments: list[Segment]
    systems: dict[str, SystemResult] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "data": str(self.data),
            "task": "translation",
            "segments": len(self.segments),
            "systems": {
                name: {"chrf": round(r.scores.chrf, 2), "bleu": round(r.scores.bleu, 2),
                       "model": r.model, "adapter": r.adapter}
                for name, r in self.systems.items()
            },
        }

    def render(self) -> str:
        lines = [f"{self.data}: {len(self.segments)} segments, Darija → English",
                 f"{'system':<10} {'chrF':>6} {'BLEU':>6}  model"]
        for name, r in self.systems.items():
            model = r.model + (f" + {r.adapter}" if r.adapter else "")
            lines.append(f"{name:<10} {r.scores.chrf:6.1f} {r.scores.bleu:6.1f}  {model}")
        if BASE in self.systems and ADAPTER in self.systems:
            base, tuned = self.systems[BASE].scores, self.systems[ADAPTER].scores
            lines.append(f"adapter − base: chrF {tuned.chrf - base.chrf:+.1f}, BLEU {tuned.bleu - base.bleu:+.1f}")
        return "\n".join(lines)

    def per_segment_rows(self) -> list[dict]:
        return [
            {"id": s.id, "text": s.text, "reference": s.translation,
             "hypotheses": {name: r.hypotheses[i] for name, r in self.systems.items()}}
            for i, s in enumerate(self.segments)
        ]


def score(hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    """Corpus chrF and BLEU, sacrebleu's defaults (chrF: character 6-grams, β=2)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
    sacrebleu = _import_sacrebleu()
    return Scores(
        chrf=sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score,
        bleu=sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
    )


def first_line(text: str) -> str:
    """The hypothesis in a reply: its first non-blank line, stripped."""
    stripped = text.strip()
    return stripped.split("\n", 1)[0].strip()


def read_references(path: str | Path, limit: int | None = None) -> list[Segment]:
    """The segments to evaluate on: every one must have a translation (the reference)."""
    segments = read_segments(path, what="evaluation data")
    if not segments:
        raise ValidationError(f"{path} has no segments to evaluate")
    missing = [s.id for s in segments if not (s.translation or "").strip()]
    if missing:
        shown = ", ".join(str(i) for i in missing[:5]) + (", …" if len(missing) > 5 else "")
        raise ValidationError(
            f"{path}: {len(missing)} segment(s) have no reference translation ({shown}); "
            "evaluate on translated segments (`dziri data translate`)"
        )
    return segments[:limit] if limit is not None else segments


def translate(chat: Callable, segments: Iterable[Segment], *, max_tokens: int = MAX_TOKENS, seed: int = SEED,
              desc: str = "translating") -> list[str]:
    """Each segment's hypothesis from `chat(messages, options) -> iterator of text pieces`
    (a Backend facade's chat), with a progress bar."""
    from tqdm import tqdm

    options = GenerationOptions(max_tokens=max_tokens, temperature=0.0, seed=seed)
    segments = list(segments)
    hypotheses = []
    for segment in tqdm(segments, desc=desc, unit="segment", leave=False):
        hypotheses.append(_first_line_of_reply(chat(translation_messages(segment.text), options)))
    return hypotheses


def _first_line_of_reply(pieces) -> str:
    reply = ""
    try:
        for piece in pieces:
            reply += piece
            if "\n" in reply.lstrip():
                break  # the first line is complete: the rest is never read
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()  # stops the backend at the next token
    return first_line(reply)


# ---- the systems to compare: the configured backend, with its adapter swapped ----------------


def with_adapter(config: DziriConfig, adapter_path: str) -> DziriConfig:
    """A copy of `config` whose llama.cpp backend uses this adapter ("" for none)."""
    require_llamacpp(config)
    changed = config.model_copy(deep=True)
    extra = changed.backend.model_extra
    extra[LLAMACPP] = {**changed.backend.plugin_settings(LLAMACPP), "adapter_path": adapter_path}
    return changed


def require_llamacpp(config: DziriConfig) -> None:
    if config.backend.use != LLAMACPP:
        raise ConfigError(
            "--adapter, --no-adapter and --both swap the llama.cpp backend's LoRA adapter, but the "
            f"configured backend is {config.backend.use!r}: set DZIRI_BACKEND=llamacpp or leave them out"
        )


def system_configs(config: DziriConfig, adapter: str | None, no_adapter: bool, both: bool) -> dict[str, DziriConfig]:
    """{system name: config}: what `dziri eval`'s flags ask to evaluate."""
    if adapter is not None and no_adapter:
        raise ConfigError("--adapter and --no-adapter contradict each other")
    if both and no_adapter:
        raise ConfigError("--both already evaluates the base model: leave out --no-adapter")
    if both:
        return {BASE: with_adapter(config, ""),
                ADAPTER: with_adapter(config, adapter) if adapter is not None else config}
    if no_adapter:
        return {BASE: with_adapter(config, "")}
    if adapter is not None:
        return {ADAPTER: with_adapter(config, adapter)}
    return {"": config}  # named once the backend says whether it has an adapter


@dataclass
class LoadedSystem:
    name: str
    app: object  # dziri.core.app.App
    model: str
    adapter: str


@contextmanager
def loaded_systems(configs: dict[str, DziriConfig]) -> Iterator[list[LoadedSystem]]:
    """An App per system, every model loaded first (a wrong adapter fails before minutes of
    generation), named when the caller left the name to the backend; all closed at the end."""
    from dziri.core.app import App

    apps = []
    try:
        systems = []
        for name, config in configs.items():
            app = App(config)
            apps.append(app)
            info = app.backend.model_info()
            adapter = adapter_of(app, config)
            if not name:
                name = (ADAPTER if adapter else BASE) if config.backend.use == LLAMACPP else config.backend.use
            if name == ADAPTER and not adapter:
                raise ConfigError(
                    "no adapter to evaluate: the llama.cpp backend serves none (no Darija adapter is shipped "
                    "for this model yet, or adapter_path is empty); pass --adapter PATH"
                )
            systems.append(LoadedSystem(name, app, info.name, adapter))
        yield systems
    finally:
        for app in apps:
            app.close()


def evaluate(data: str | Path, configs: dict[str, DziriConfig], *, limit: int | None = None,
             max_tokens: int = MAX_TOKENS, seed: int = SEED) -> Evaluation:
    segments = read_references(data, limit)
    _import_sacrebleu()  # before minutes of generation, not after
    evaluation = Evaluation(Path(data), segments)
    references = [s.translation or "" for s in segments]
    with loaded_systems(configs) as systems:
        for system in systems:
            hypotheses = translate(system.app.backend.chat, segments, max_tokens=max_tokens, seed=seed,
                                   desc=system.name)
            evaluation.systems[system.name] = SystemResult(system.name, score(hypotheses, references), hypotheses,
                                                           model=system.model, adapter=system.adapter)
    return evaluation


def adapter_of(app, config: DziriConfig) -> str:
    if config.backend.use != LLAMACPP:
        return ""
    plugin = app.pm.get_plugin(f"backend:{LLAMACPP}")
    return str(getattr(plugin, "adapter_path", None) or "")


def default_output(data: str | Path) -> Path:
    """`<DATA stem>.eval.jsonl` in the current directory: the data dir may be read-only or
    tracked (data/darija-en), and the file belongs to the run, not to the data."""
    return Path.cwd() / f"{Path(data).stem}.eval.jsonl"


def write_outputs(evaluation: Evaluation, path: str | Path) -> Path:
    path = Path(path)
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in evaluation.per_segment_rows())
    write_atomically(path, body)
    return path


def _import_sacrebleu():
    try:
        import sacrebleu
    except ImportError:
        raise DziriError("scoring needs sacrebleu: pip install 'dziri[train]'") from None
    return sacrebleu

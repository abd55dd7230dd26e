"""Run configuration: YAML files validated against typed sections, with `key.sub=value` overrides.

Every problem in a config is reported at once, each naming the dotted key, the bad value and what is valid.
Layers (`extends`, overrides, sweep values, eval-time overrides) combine by one rule, `merge_config`.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mile.errors import MileError
from mile.instruct.registry import dataset_names
from mile.model.config import SIZES
from mile.model.generation import GenerationConfig
from mile.pretrained import INIT_KINDS
from mile.safe_yaml import YAMLError, parse_yaml
from mile.tuning.base import TOWERS
from mile.tuning.errors import PlanError
from mile.tuning.plan import PlanConfig, parse_plan_notation
from mile.tuning.registry import methods
from mile.tuning.treatment import FIXED

# Upper bounds for counts, so that an absurd value (1e15) is a config error, not a traceback deep in a loop.
MAX_BATCH, MAX_TOKENS, MAX_COUNT = 2**16, 512, 2**31 - 1
MAX_BEAMS = 64  # `mile predict --beams` repeats this bound (mile/cli/main.py; a test checks they agree)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InitSection(Section):
    kind: Literal[INIT_KINDS] = "random"  # the kinds mile.pretrained.build knows
    path: str | None = None  # blip_hf: directory or hub id; blip_pth: .pth file; mile: saved directory
    vision: str | None = None  # compose: transformers ViT / DINOv2 directory
    text: str | None = None  # compose: BERT directory (both text towers)
    vocab: str | None = None  # a vocab.txt overriding the checkpoint's (default: checkpoint's, else bundled)


class ModelSection(Section):
    size: str | None = "tiny"  # architecture for random / blip_pth init
    image_size: int | None = Field(default=None, ge=16, le=4096)  # None: the size's or checkpoint's own
    init: InitSection = Field(default_factory=InitSection)
    max_question_len: int = Field(default=35, ge=3, le=MAX_TOKENS)
    max_answer_len: int = Field(default=24, ge=3, le=MAX_TOKENS)
    label_smoothing: float = Field(default=0.1, ge=0.0, lt=1.0)

    @field_validator("size")
    @classmethod
    def _known_size(cls, value: str | None) -> str | None:
        if value is not None and value not in SIZES:
            raise ValueError(f"unknown size {value!r}; valid sizes: {sorted(SIZES)}")
        return value


# eval.inference: how answers are produced; a mode other than a run's own keeps its answers in eval/<mode>/<split>
INFERENCES = ("generate", "rank")

# the registry's names plus `demo`, the bundled VQA-RAD sample (mile.engine.datasets gives it its root)
DATASETS = ("demo", *dataset_names())


class SourceSection(Section):
    """A dataset to read splits from (the evaluation data, or extra training data)."""

    dataset: Literal[DATASETS]
    root: str | None = None
    split: str = "train"  # for extra training sources
    language: Literal["en", "zh", "all"] = "en"  # SLAKE
    options: dict[str, Any] = Field(default_factory=dict)  # dataset-specific extras (instruct: image_roots)


class PromptSection(Section):
    """Which text of an instruction record the model reads (plain records always give their question)."""

    train: Literal["random", "template", "question"] = "random"  # random: one prompt of the pool per epoch
    eval: Literal["random", "template", "question"] = "question"  # question: the plain question
    template_id: int | None = Field(default=None, ge=1)  # for `template`


class DataSection(Section):
    dataset: Literal[DATASETS] = "demo"
    root: str | None = None  # dataset folder (demo: the bundled one)
    train_split: str = "train"  # `a+b` joins splits
    eval_splits: list[str] = Field(default_factory=lambda: ["test"])
    language: Literal["en", "zh", "all"] = "en"  # SLAKE
    image_norm: Literal["auto", "imagenet", "clip", "none"] = "auto"  # auto: clip for BLIP, else imagenet
    augment: bool = False
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    limit: int | None = Field(default=None, ge=1, le=MAX_COUNT)  # first N records of each split (smoke runs)
    num_workers: int = Field(default=0, ge=0, le=1024)
    options: dict[str, Any] = Field(default_factory=dict)  # dataset-specific extras
    # evaluate on another dataset (e.g. plain SLAKE after instruction data)
    eval_source: SourceSection | None = None
    extra_train: list[SourceSection] = Field(default_factory=list)  # more training records (mixing datasets)
    prompts: PromptSection = Field(default_factory=PromptSection)
    leaks: Literal["refuse", "drop", "allow"] = "refuse"  # instruction records repeating evaluation questions


STOPPING_METRICS = Literal["global", "yesno.closed", "yesno.open", "answer_type.closed", "answer_type.open"]


class EarlyStoppingSection(Section):
    """Stop when an evaluation split's metric has not improved for `patience` evaluations, and keep the weights
    of the best evaluation (engine/early_stopping.py)."""

    # the metric of eval/epoch-N/<split>/metrics.json; closed / open name their rule
    metric: STOPPING_METRICS = "global"
    split: str | None = None  # None: the first of data.eval_splits
    patience: int = Field(default=2, ge=1, le=100_000)  # evaluations without improvement before stopping
    min_delta: float = Field(default=0.0, ge=0, lt=1)  # an improvement must exceed this (accuracy, 0-1)


class TrainSection(Section):
    epochs: int = Field(default=10, ge=0, le=100_000)
    batch_size: int = Field(default=16, ge=1, le=MAX_BATCH)
    lr: float = Field(default=2e-5, gt=0)
    lr_adapters: float | None = Field(default=None, gt=0)  # for parameters a PEFT plan adds; None: lr
    lr_new: float | None = Field(default=None, gt=0)  # weights the checkpoint lacked (random init); None: lr
    # layer-wise decay of the ViT's rates (e.g. 0.75): block i of L trains at rate * decay^(L - i), embeddings at
    # rate * decay^(L + 1); the final norm and the text towers keep their rate. None: no decay
    layer_decay: float | None = Field(default=None, gt=0, le=1)
    weight_decay: float = Field(default=0.05, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    grad_accum: int = Field(default=1, ge=1, le=MAX_BATCH)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    seed: int = Field(default=42, ge=0, le=2**32 - 1)  # numpy's seed range
    eval_every: int = Field(default=0, ge=0, le=100_000)  # epochs between evaluations; 0: only after training
    early_stopping: EarlyStoppingSection | None = None  # needs eval_every >= 1 (the epochs it compares)
    # auto: bf16 autocast where the hardware multiplies bf16 natively (CUDA with bf16, CPUs with AVX512_BF16 or
    # AMX), else fp32; fp16 needs a CUDA GPU. The choice and its reason go to env.json (engine/precision.py).
    mixed_precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    log_every: int = Field(default=10, ge=1, le=MAX_COUNT)
    # optimizer steps between checkpoints; 0: each epoch
    checkpoint_every: int = Field(default=0, ge=0, le=MAX_COUNT)
    gradient_checkpointing: list[Literal[TOWERS]] = Field(default_factory=list)
    feature_cache: Literal["auto", "none", "memory", "disk"] = "auto"  # vision features of a frozen ViT
    feature_cache_items: int = Field(default=4096, ge=1, le=MAX_COUNT)  # images held in memory (LRU)
    feature_cache_dir: str | None = None  # disk cache root (default $MILE_CACHE or ~/.cache/mile)
    on_nonfinite: Literal["stop", "skip"] = "stop"
    compile: bool = False  # torch.compile the training forward (see benchmarks/README.md for when it pays)
    device: Literal["auto", "cpu"] = "auto"


class EvalSection(Section):
    num_beams: int = Field(default=3, ge=1, le=MAX_BEAMS)
    max_new_tokens: int = Field(default=10, ge=1, le=MAX_TOKENS)
    min_new_tokens: int = Field(default=1, ge=0, le=MAX_TOKENS)  # no [SEP] before this many: no empty answers
    batch_size: int = Field(default=32, ge=1, le=MAX_BATCH)
    # generate the answer token by token, or rank: pick it from the candidate answers by likelihood (BLIP's VQA)
    inference: Literal[INFERENCES] = "generate"
    rank_top_k: int = Field(default=128, ge=1, le=MAX_COUNT)  # candidates preselected by their first token
    answer_list: str | None = None  # rank: a JSON list of candidate answers; default: the training split's
    merge_adapters: bool = True  # merge LoRA-family adapters for evaluation when exact
    compile: bool = False  # torch.compile the image and question encoders for evaluation

    def generation(self, num_beams: int | None = None) -> GenerationConfig:
        """The generation settings, with `num_beams` (None: this section's) held to eval.num_beams's bounds."""
        if num_beams is None:
            num_beams = self.num_beams
        # `is None`, not `or`: a 0 must be refused, not silently replaced by the default
        elif isinstance(num_beams, bool) or not isinstance(num_beams, int) or not 1 <= num_beams <= MAX_BEAMS:
            raise ConfigError(
                f"num_beams must be an integer from 1 to {MAX_BEAMS} (as eval.num_beams), got {num_beams!r}"
            )
        return GenerationConfig(
            num_beams=num_beams, max_new_tokens=self.max_new_tokens, min_new_tokens=self.min_new_tokens
        )


class RunSection(Section):
    output_dir: str = "runs"
    name: str | None = None  # default: <plan notation>-<dataset>-s<seed>


class Config(Section):
    model: ModelSection = Field(default_factory=ModelSection)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    run: RunSection = Field(default_factory=RunSection)
    extends: str | None = None  # a base config file, relative to this one; this file's keys win

    @field_validator("plan", mode="before")
    @classmethod
    def _plan_notation(cls, value: Any) -> Any:
        return _plan_towers(value)  # `plan: F-IA3-IA3` in a file that nothing was merged into

    @model_validator(mode="after")
    def _early_stopping_split(self) -> Config:
        stop = self.train.early_stopping
        if stop is None:
            return self
        if not self.train.eval_every:
            raise ValueError("train.early_stopping compares evaluations: set train.eval_every (e.g. 1)")
        if not self.data.eval_splits:
            raise ValueError("train.early_stopping needs an evaluation split: data.eval_splits is empty")
        if stop.split is not None and stop.split not in self.data.eval_splits:
            raise ValueError(
                f"train.early_stopping.split {stop.split!r} is not one of data.eval_splits {self.data.eval_splits}"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude={"extends"}), sort_keys=False)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {"a.b.c": leaf}; lists and scalars are leaves."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def config_leaves(cfg: Config) -> dict[str, Any]:
    """The resolved config as dotted leaves, without the `run` section (where a run lives is not what it is)."""
    return flatten(cfg.model_dump(mode="json", exclude={"run", "extends"}))


def config_differences(stored: Config, wanted: Config, shown: int = 4) -> str | None:
    """`key (run: old, new: value), ...` for the keys (outside `run`) where two configs differ; None if none."""
    old, new = config_leaves(stored), config_leaves(wanted)
    missing = object()
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, missing) != new.get(k, missing))
    if not keys:
        return None
    text = ", ".join(f"{k} (run: {old.get(k)!r}, now: {new.get(k)!r})" for k in keys[:shown])
    return text + (f" and {len(keys) - shown} more key(s)" if len(keys) > shown else "")


class ConfigError(MileError, ValueError):
    """One or more problems in a config; the message lists every one."""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """A config from a YAML file (or the defaults) with `a.b=value` overrides applied, validated."""
    data = _read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    for item in overrides or []:
        data = merge_config(data, override_layer(item))
    return validate_config(data, source)


def validate_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """The typed config; every problem is reported at once, including non-finite numbers anywhere (free-form
    method and dataset options too: an `inf` learning rate or LoRA alpha trains to NaN weights)."""
    problems = {key: f"must be a finite number (got {value!r})" for key, value in _non_finite(data)}
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        problems = {**validation_problems(exc), **problems}  # ours says more about nan than "> 0"
    if problems:
        lines = [f"  {key}: {problem}" for key, problem in problems.items()]
        raise ConfigError("\n".join([f"{len(lines)} problem(s) in config {source}:", *lines]))
    return cfg


def _non_finite(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every inf / nan float in nested mappings and lists."""
    if isinstance(data, float) and not math.isfinite(data):
        return [(prefix, data)]
    if isinstance(data, dict):
        return [hit for k, v in data.items() for hit in _non_finite(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(data, (list, tuple)):
        return [hit for i, v in enumerate(data) for hit in _non_finite(v, f"{prefix}[{i}]")]
    return []


def validation_problems(exc: ValidationError) -> dict[str, str]:
    """Dotted key -> what is wrong with it, for every error pydantic found."""
    problems = {}
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if not err["loc"]:  # a check across sections (Config's own validators): its message names the keys
            problems["config"] = err["msg"].removeprefix("Value error, ")
        elif err["type"] == "extra_forbidden":
            problems[key] = f"unknown key{_valid_keys(err['loc'])}"
        else:
            problems[key] = f"{err['msg']} (got {err.get('input')!r})"
    return problems


def _valid_keys(loc: tuple) -> str:
    model: Any = Config
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        annotation = field.annotation if field else None
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None:
            return ""
    names = sorted(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} valid keys: {names}"


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_variables(data: Any, source: str, key: str = "") -> Any:
    """`${NAME}` and `${NAME:-default}` in the string values of a config file, from the environment (so that
    `root: ${MILE_SHARED:-../shared}/data/slake` finds the shared folder wherever it is). A variable that is
    not set and has no default is an error naming the key."""
    if isinstance(data, dict):
        return {k: expand_variables(v, source, f"{key}.{k}" if key else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_variables(v, source, f"{key}[{i}]") for i, v in enumerate(data)]
    if not isinstance(data, str) or "${" not in data:
        return data

    def value(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name, default)
        if found is None:
            raise ConfigError(
                f"config {source}: {key} uses ${{{name}}}, which is not set (or write ${{{name}:-default}})"
            )
        return found

    return _VARIABLE.sub(value, data)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if not path.is_file():
        hint = (
            " (it looks like an override key=value; the config file comes first)" if "=" in path.name else ""
        )
        raise ConfigError(f"config file {path} not found{hint}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, YAMLError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read as UTF-8 text ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    data = expand_variables(data, str(path))
    base = data.pop("extends", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
    if base_path in seen:
        raise ConfigError(f"config {path} extends {base_path}, which is already being read (a cycle)")
    return merge_config(_read_yaml(base_path, (*seen, base_path)), data)


def merge_config(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` over `base`: the one rule for `extends`, `key=value` overrides, sweeps and eval-time overrides.

    Mappings merge key by key; anything else, lists too, is replaced. A tower's treatment (`plan.vision`,
    `plan.text_encoder`, `plan.text_decoder`) that `top` gives is replaced whole, since one method's options mean
    nothing to another; only a mapping without `method` (`plan.text_decoder.r=8`), which cannot be a treatment on
    its own, edits the base's. A plan in notation (`T-T-LoRA`) stands for its three towers' treatments, so the
    base's `plan.extra_trainable` stays. Neither input is changed.
    """
    out = copy.deepcopy(base)
    for key, value in top.items():
        out[key] = _plan_over(out.get(key), value) if key == "plan" else _nested(out.get(key), value)
    return out


def _nested(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        return {**base, **{key: _nested(base.get(key), value) for key, value in top.items()}}
    return copy.deepcopy(top)


def _plan_over(base: Any, top: Any) -> Any:
    base, top = _towers_or_text(base), _towers_or_text(top)
    if isinstance(base, str) and isinstance(top, dict):
        return base  # notation that does not parse: kept for validation to report, not silently edited away
    if not (isinstance(base, dict) and isinstance(top, dict)):
        return copy.deepcopy(top)
    out = dict(base)
    for key, value in top.items():
        out[key] = _treatment(base.get(key), value) if key in TOWERS else _nested(base.get(key), value)
    return out


def _treatment(base: Any, top: Any) -> Any:
    """A tower's treatment from `top` whole, or `top`'s options over the base's method."""
    if not isinstance(top, dict) or "method" in top:
        return copy.deepcopy(top)
    if isinstance(base, str) and base not in FIXED:
        base = {"method": base}  # a method by name
    if not isinstance(base, dict):
        return copy.deepcopy(top)  # options for frozen / full: validation says the method is missing
    info = methods().get(str(base.get("method")).lower())
    aliases = dict(info.aliases) if info else {}
    given = {aliases.get(key, key) for key in top}
    # an option given by its alias (`alpha`) replaces the base's under its own name (`lora_alpha`)
    kept = {key: value for key, value in base.items() if aliases.get(key, key) not in given}
    return {**kept, **copy.deepcopy(top)}


def _plan_towers(plan: Any) -> Any:
    """A plan in notation as its three towers' treatments (paper defaults written out); anything else as it is.
    Raises PlanError for notation that does not parse."""
    if not isinstance(plan, str):
        return plan
    return parse_plan_notation(plan).model_dump(mode="json", exclude={"extra_trainable"})


def _towers_or_text(plan: Any) -> Any:
    try:
        return _plan_towers(plan)
    except PlanError:
        return plan


def dotted_layer(key: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, value -> {a: {b: {c: value}}}: one key as a top layer for `merge_config`."""
    layer: Any = value
    for part in reversed(key.split(".")):
        layer = {part: layer}
    return layer


def override_layer(item: str) -> dict[str, Any]:
    """`a.b.c=value` (the value read as YAML) as a top layer for `merge_config`."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except (yaml.constructor.ConstructorError, YAMLError) as exc:  # duplicate keys, runaway aliases
        raise ConfigError(f"override {item!r}: {exc}") from None
    except yaml.YAMLError:  # not YAML: the text itself (e.g. a path with a colon)
        value = raw
    return dotted_layer(key.strip(), value)

"""A model and its tokenizer from any supported initialisation, with consistency checks between the two."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mile.model.checkpoints import (
    CheckpointError,
    LoadReport,
    compose,
    load_blip_pth,
    load_hf_blip,
    load_model,
    save_model,
)
from mile.model.config import size_config
from mile.model.mile import MileModel
from mile.tokenizer import VOCAB_FILE, MileTokenizer

INIT_KINDS = ("random", "blip_hf", "blip_pth", "compose", "mile")


def bundled_vocab() -> Path:
    """bert-base-uncased's WordPiece vocabulary, shipped with the package (BLIP's tokenizer)."""
    return Path(str(resources.files("mile") / "resources" / "vocab" / "bert-base-uncased.txt"))


@dataclass
class Pretrained:
    model: MileModel
    tokenizer: MileTokenizer
    report: LoadReport


def build(
    kind: str = "random",
    *,
    size: str | None = None,
    image_size: int | None = None,
    path: str | Path | None = None,
    vision: str | Path | None = None,
    text: str | Path | None = None,
    vocab: str | Path | None = None,
    max_question_len: int = 35,
) -> Pretrained:
    """Build a model. kind: random (size), blip_hf (path: directory or hub id), blip_pth (path + size),
    compose (vision + text directories), mile (path: a directory saved by `save_pretrained`)."""
    tok_kwargs = {"max_question_len": max_question_len}
    if kind == "random":
        model = MileModel(size_config(_need(size, "size", kind), image_size))
        tokenizer, report = _tokenizer(vocab, None, tok_kwargs), LoadReport(source="random init")
    elif kind == "blip_hf":
        model, directory, report = load_hf_blip(str(_need(path, "path", kind)), image_size)
        tokenizer = _tokenizer(vocab, directory, tok_kwargs)
    elif kind == "blip_pth":
        model, report = load_blip_pth(
            _need(path, "path", kind), size_config(_need(size, "size", kind), image_size)
        )
        tokenizer = _tokenizer(vocab, None, tok_kwargs)
    elif kind == "compose":
        text_dir = Path(_need(text, "text", kind))
        tokenizer = MileTokenizer.from_dir(text_dir, **tok_kwargs)
        model, report = compose(
            _need(vision, "vision", kind), text_dir, image_size or 224, tokenizer.special_ids()
        )
    elif kind == "mile":
        directory = Path(_need(path, "path", kind))
        model, report = load_model(directory, image_size)
        tokenizer = MileTokenizer.from_dir(directory, **tok_kwargs)
    else:
        raise CheckpointError(f"unknown model init kind {kind!r}; valid kinds: {list(INIT_KINDS)}")
    check_tokenizer(model, tokenizer)
    return Pretrained(model, tokenizer, report)


def save_pretrained(model: MileModel, tokenizer: MileTokenizer, directory: str | Path) -> Path:
    """Weights, architecture and vocabulary in one directory, loadable with build("mile", path=...)."""
    save_model(model, directory)
    tokenizer.save(directory)
    return Path(directory)


def check_tokenizer(model: MileModel, tokenizer: MileTokenizer) -> None:
    cfg = model.config
    pairs = {
        "text.vocab_size": (cfg.text.vocab_size, tokenizer.vocab_size),
        "bos_token_id ([DEC])": (cfg.bos_token_id, tokenizer.bos_token_id),
        "enc_token_id ([ENC])": (cfg.enc_token_id, tokenizer.enc_token_id),
        "eos_token_id ([SEP])": (cfg.eos_token_id, tokenizer.sep_token_id),
        "pad_token_id ([PAD])": (cfg.pad_token_id, tokenizer.pad_token_id),
    }
    bad = [f"{name}: model {m} vs tokenizer {t}" for name, (m, t) in pairs.items() if m != t]
    if bad:
        raise CheckpointError(f"model and tokenizer {tokenizer.vocab_file} disagree: " + "; ".join(bad))


def _tokenizer(vocab: str | Path | None, directory: Path | None, kwargs: dict) -> MileTokenizer:
    """An explicit vocabulary first, then the checkpoint directory's, then BLIP's bundled one."""
    if vocab is not None:
        return MileTokenizer(vocab, **kwargs)
    if directory is not None and (directory / VOCAB_FILE).is_file():
        return MileTokenizer.from_dir(directory, **kwargs)
    return MileTokenizer(bundled_vocab(), **kwargs)


def _need(value, key: str, kind: str):
    if value is None:
        raise CheckpointError(f"model.init.{key} is required for init kind {kind!r}")
    return value

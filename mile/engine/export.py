"""Exporting a finished run, so that its model can leave: our standalone checkpoint (`mile`), peft adapters
over a base in our format (`peft`), or a transformers `BlipForQuestionAnswering` directory (`transformers`).

Loading each is described in docs/export.md, and for `peft` in the README.md the export writes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from mile.atomic import atomic_write, atomic_write_text
from mile.data.images import NORMALIZE_PRESETS
from mile.engine.build import Session
from mile.engine.inference import load_trained
from mile.engine.rundir import RunDir
from mile.errors import MileError
from mile.model.checkpoints import CheckpointError
from mile.model.checkpoints.hf_export import TIED, blip_misfits, hf_blip_config, to_hf_blip_state
from mile.pretrained import save_pretrained
from mile.tokenizer import DEC, ENC, VOCAB_FILE, MileTokenizer
from mile.tuning.base import TOWERS
from mile.tuning.errors import PlanError
from mile.tuning.peft_method import PeftApplied
from mile.tuning.plan import MethodSpec

FORMATS = ("mile", "peft", "transformers")
BASE = "base"  # --format peft: the base model's folder


class ExportError(MileError, ValueError):
    """An export that cannot be written as asked (unknown format, missing package)."""


def export_run(run: RunDir, directory: str | Path, fmt: str = "mile") -> Path:
    """Write the run's model to `directory` in format `fmt` (one of FORMATS); returns the directory.

    The export is written in full beside `directory` first, then moved in: a new directory appears complete
    or not at all, and into an existing one each file is replaced whole, so a crash or a kill mid-export never
    leaves an export that looks finished but lacks files (scripts test for model.safetensors)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; valid formats: {list(FORMATS)}")
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        if fmt == "peft":
            _export_peft(run, staging, directory)
        elif fmt == "transformers":
            _export_transformers(_merged(run), run, staging)
        else:
            session = _merged(run)
            save_pretrained(session.model, session.tokenizer, staging)
        _move_in(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _move_in(staging: Path, directory: Path) -> None:
    """Put the finished export at `directory`: one rename when it is new, else each file replaced whole."""
    try:
        staging.rename(directory)  # fails if directory exists (and is not empty)
        return
    except OSError:
        if not directory.is_dir():
            raise
    for file in sorted(staging.rglob("*")):
        target = directory / file.relative_to(staging)
        if file.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.replace(file, target)


def _merged(run: RunDir) -> Session:
    """The run's model with LoRA-family adapters merged into the weights and every method removed. Methods
    that cannot merge (prefixes, bottleneck adapters, ...) would be lost, so such runs are refused."""
    _refuse(run, _native(run), "cannot be merged into the weights")
    session = load_trained(run)
    session.tuning.unload(merge=True)
    return session


def _methods(run: RunDir) -> dict[str, MethodSpec]:
    plan = run.config().plan
    return {t: spec for t in TOWERS if isinstance(spec := plan.tower(t), MethodSpec)}


def _native(run: RunDir) -> list[str]:
    """Towers whose method is mile's own (prefix, ptv2, houlsby, pfeiffer): neither mergeable nor peft's."""
    return [t for t, spec in _methods(run).items() if spec.info.kind == "native"]


def _refuse(run: RunDir, towers: list[str], why: str) -> None:
    if towers:
        methods = _methods(run)
        named = ", ".join(f"{t} ({methods[t].method})" for t in towers)
        raise PlanError(
            f"{run.path}: the plan's method on {named} {why}; use the run directory itself (mile eval / "
            "predict, or mile.tuning.load_tuned over its weights/) instead of an export"
        )


# -- peft ----------------------------------------------------------------------------------------------------
def _export_peft(run: RunDir, out: Path, final: Path) -> Path:
    """OUT/<tower>/ per peft-backed tower (peft's own files) and OUT/base/ (our format: everything else,
    trained towers and partially trained weights included); its README names the `final` folder."""
    why = "is native to mile and has no peft tuner, so --format peft cannot hold it (nor can --format mile: "
    why += "it does not merge)"
    _refuse(run, _native(run), why)
    session = load_trained(run)
    adapters = [t for t, a in session.tuning.applied.items() if isinstance(a, PeftApplied)]
    out.mkdir(parents=True, exist_ok=True)
    for tower in adapters:  # peft's adapter_config.json + adapter_model.safetensors, as in the run's weights/
        (out / tower).mkdir(exist_ok=True)
        session.tuning.applied[tower].save(out / tower)
    # peft's layers out, the tower's own modules back; trained base weights (full, partial) stay in place
    model = session.tuning.unload(merge=False)
    save_pretrained(model, session.tokenizer, out / BASE)
    atomic_write_text(out / "README.md", _peft_readme(final, adapters))
    return out


def _peft_readme(out: Path, towers: list[str]) -> str:
    loads = "".join(
        f'PeftModel.from_pretrained(model.{t}, "{out / t}")  # injects the adapter into the tower\n'
        for t in towers
    )
    return (
        f"# {out.name}: peft adapters over a mile base model\n\n"
        f"`{BASE}/` is the base model in mile's format (trained towers included; also `model.init: "
        f"{{kind: mile, path: {out / BASE}}}`); {', '.join(f'`{t}/`' for t in towers) or 'no folder'} "
        "hold peft adapters, each for the tower it is named after.\n\n"
        "```python\nfrom peft import PeftModel\nfrom mile.model.checkpoints import load_model\n\n"
        f'model, _ = load_model("{out / BASE}")\n{loads}model.eval()\n```\n\n'
        f'Tokenizer: `mile.tokenizer.MileTokenizer.from_dir("{out / BASE}")` (questions start with [ENC], '
        "answers with [DEC]).\n"
    )


# -- transformers --------------------------------------------------------------------------------------------
def _export_transformers(session: Session, run: RunDir, out: Path) -> Path:
    """config.json, model.safetensors, tokenizer and image processor files of a BlipForQuestionAnswering."""
    try:
        from transformers import BlipConfig, BlipForQuestionAnswering
    except ImportError as exc:
        raise ExportError(f"--format transformers needs the transformers package ({exc})") from None
    misfits = blip_misfits(session.model.config)
    if misfits:
        raise CheckpointError(
            f"{run.path}: transformers' BlipForQuestionAnswering cannot hold this model: "
            f"{'; '.join(misfits)}; use --format mile or --format peft instead"
        )
    state = to_hf_blip_state(session.model)
    config = BlipConfig(**hf_blip_config(session.model.config))
    with torch.device("meta"):  # shapes only, no memory: the file must fill exactly this model
        theirs = {k: tuple(v.shape) for k, v in BlipForQuestionAnswering(config).state_dict().items()}
    bad = sorted((set(theirs) ^ set(state)) - set(TIED)) + sorted(
        k for k in state if k in theirs and tuple(state[k].shape) != theirs[k]
    )
    assert not bad, f"BLIP keys or shapes that do not match transformers': {bad[:5]}"
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    atomic_write(out / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    _write_processor(session, out)
    return out


def _write_processor(session: Session, out: Path) -> None:
    """A BertTokenizer over our vocabulary with [DEC] (bos) and [ENC] added, and a BlipImageProcessor with
    our image size and normalisation, for BlipProcessor / AutoTokenizer.from_pretrained(out)."""
    from transformers import BertTokenizerFast, BlipProcessor

    try:  # transformers 5: the PIL backend, which resizes as our pipeline does (PIL bicubic)
        from transformers import BlipImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4: the PIL-based one
        from transformers import BlipImageProcessor as ImageProcessor
    ours = session.tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / VOCAB_FILE).write_bytes(ours.vocab_file.read_bytes())
        tokenizer = BertTokenizerFast.from_pretrained(tmp, do_lower_case=ours.lowercase)
    tokenizer.add_special_tokens({"bos_token": DEC, "additional_special_tokens": [ENC]})
    tokenizer.model_max_length = session.model.config.text.max_positions
    _check_ids(tokenizer, ours)
    size = session.model.config.vision.image_size
    stats = NORMALIZE_PRESETS[session.image_norm]
    norm = {"image_mean": list(stats[0]), "image_std": list(stats[1])} if stats else {"do_normalize": False}
    image = ImageProcessor(size={"height": size, "width": size}, **norm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        BlipProcessor(image, tokenizer).save_pretrained(out)
        image.save_pretrained(out)  # preprocessor_config.json: what transformers 4 reads
    # transformers 5 writes tokenizer.json only; mile's blip_hf loader (and slow tokenizers) read vocab.txt
    (out / VOCAB_FILE).write_bytes(ours.vocab_file.read_bytes())


def _check_ids(tokenizer, ours: MileTokenizer) -> None:
    pairs = {
        DEC: (tokenizer.convert_tokens_to_ids(DEC), ours.bos_token_id),
        ENC: (tokenizer.convert_tokens_to_ids(ENC), ours.enc_token_id),
        "[PAD]": (tokenizer.pad_token_id, ours.pad_token_id),
        "[SEP]": (tokenizer.sep_token_id, ours.sep_token_id),
        "vocabulary size": (len(tokenizer), ours.vocab_size),
    }
    bad = [f"{name}: transformers {a} vs ours {b}" for name, (a, b) in pairs.items() if a != b]
    if bad:
        raise ExportError(f"the transformers tokenizer over {ours.vocab_file} disagrees with ours: {bad}")

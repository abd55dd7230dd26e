"""The demo's pretrained checkpoint: a tiny model trained on VQA-RAD without the demo's images.

`mile demo` adapts this checkpoint (shipped in mile/resources/checkpoints/) to the bundled 40-image subset; a
randomly initialised tiny model learns little more than the answer prior in the demo's two minutes, and PEFT plans
need pretrained weights to adapt. `mile demo --build-checkpoint DIR` rebuilds it:

1. `write_pretrain_data`: VQA-RAD's train and test splits as JSON lines, minus every question about one of the
   demo's 40 images (the leak guard: the checkpoint never sees a demo image, so never a demo test question); the
   test questions left (other images) are the checkpoint's own held-out check;
2. `mile train` of configs/demo-pretrain.yaml on them (the engine's one training path);
3. the trained model in our format (mile.pretrained.save_pretrained), its weights stored as float16 (half the
   size; loading casts them back), with `training_data.json`: which questions it trained on and which it left
   out (those about a demo image), its config and its held-out scores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mile.atomic import atomic_write, atomic_write_json
from mile.config import load_config
from mile.data.images import open_image
from mile.data.sample import Sample
from mile.engine.datasets import demo_root
from mile.engine.evaluate import format_metrics
from mile.engine.inference import load_trained
from mile.engine.lifecycle import prepare_run
from mile.engine.rundir import RunDir
from mile.engine.train import train_run
from mile.instruct.leaks import find_leaks, image_key
from mile.instruct.registry import load_dataset
from mile.model.checkpoints.native import FORMAT, WEIGHTS_FILE
from mile.pretrained import save_pretrained

NAME = "demo-tiny"
DATA_FILE = "training_data.json"  # beside the weights: the questions the checkpoint trained on
IMAGE_PX = 256  # longest side of the stored images, as in the bundled subset (mile/resources/demo/README.md)
SPLITS = ("train", "test")  # VQA-RAD's; train -> the checkpoint's training data, test -> its held-out check


def resource(*parts: str) -> Path:
    return Path(str(resources.files("mile").joinpath("resources", *parts)))


def checkpoint_dir() -> Path:
    """The shipped checkpoint (model.init.kind=mile, model.init.path=this)."""
    return resource("checkpoints", NAME)


def demo_images() -> set[tuple[str, str]]:
    """The images of the bundled demo subset, as the leak guard keys them ((dataset family, file name))."""
    return {image_key(s) for split in SPLITS for s in _demo(split)}


def _demo(split: str) -> list[Sample]:
    return load_dataset("vqa_rad", demo_root(), split, verify_images=False).samples


def leak_free(samples: list[Sample]) -> tuple[list[Sample], dict[str, Any]]:
    """`samples` without those about a demo image; the report names what was left out. A demo test question
    left after that would be a bug in this guard, so it is checked again by (image, question) and refused."""
    images = demo_images()
    kept = [s for s in samples if image_key(s) not in images]
    left = find_leaks(kept, _demo("test"))
    if left.n_leaked:
        raise AssertionError(f"leak guard: {left.summary()}")  # an invariant of the filter above
    dropped = [s.id for s in samples if image_key(s) in images]
    return kept, {"n_read": len(samples), "n_kept": len(kept), "n_dropped": len(dropped), "dropped": dropped}


def write_pretrain_data(vqa_rad_root: str | Path, out: str | Path) -> dict[str, Any]:
    """`<out>/{train,test}.jsonl` (generic format): VQA-RAD's splits without the demo's images, their images in
    `<out>/images` at most IMAGE_PX a side, as the bundled subset's (decoding VQA-RAD's 1,000 px originals every
    step made training 4x slower). Returns what each split kept and dropped."""
    out = Path(out)
    loaded = {split: load_dataset("vqa_rad", vqa_rad_root, split).samples for split in SPLITS}  # errors first
    (out / "images").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "source": "vqa_rad",
        "root": str(vqa_rad_root),
        "demo_images": len(demo_images()),
    }
    for split, samples in loaded.items():
        kept, report[split] = leak_free(samples)
        report[split]["kept"] = [s.id for s in kept]
        for image in sorted({s.image for s in kept}):
            _downscale(image, out / "images" / image.name)
        lines = [json.dumps(_record(s)) for s in kept]
        atomic_write(out / f"{split}.jsonl", lambda tmp, lines=lines: Path(tmp).write_text("\n".join(lines)))
    return report


def _downscale(source: Path, target: Path) -> None:
    image = open_image(source)
    image.thumbnail((IMAGE_PX, IMAGE_PX), Image.Resampling.BICUBIC)
    atomic_write(target, lambda tmp: image.save(tmp, format="JPEG", quality=90))


def _record(s: Sample) -> dict[str, Any]:
    return {
        "id": s.id,
        "image": f"images/{s.image.name}",
        "question": s.question,
        "answer": s.answer,
        "answer_type": s.answer_type,
        "question_type": s.question_type,
    }


def rebuild_checkpoint(
    out: str | Path,
    vqa_rad_root: str | Path | None,
    work: str | Path,
    overrides: list[str] | None = None,
    echo: Callable[[str], Any] = print,
) -> Path:
    """Rebuild the demo checkpoint into `out` (the data and the training run under `work`) from VQA-RAD at
    `vqa_rad_root` (None: $MILE_SHARED/data/vqa_rad, MILE_SHARED defaulting to ../shared, as the configs)."""
    work = Path(work)
    vqa_rad_root = vqa_rad_root or Path(os.environ.get("MILE_SHARED", "../shared")) / "data" / "vqa_rad"
    report = write_pretrain_data(vqa_rad_root, work / "data")
    echo(
        f"pretraining data: {report['train']['n_kept']} VQA-RAD train questions ({report['train']['n_dropped']} "
        f"about the demo's {report['demo_images']} images left out), {report['test']['n_kept']} held-out test "
        f"questions -> {work / 'data'}"
    )
    cfg = load_config(
        resource("configs", "demo-pretrain.yaml"), [f"data.root={work / 'data'}", *(overrides or [])]
    )
    cfg.run.output_dir, cfg.run.name = str(work), "run"
    run = RunDir(work / "run")
    prepare_run(run, cfg, restart=True)
    echo(f"training {cfg.plan.notation()} on them -> {run.path}")
    metrics = train_run(cfg, run)
    echo(format_metrics(metrics["test"]) + "  (held out: VQA-RAD test questions about other images)")
    session = load_trained(run)
    path = save_pretrained(session.tuning.unload(merge=True), session.tokenizer, out)
    _halve(path / WEIGHTS_FILE)
    atomic_write_json(path / DATA_FILE, {**report, "config": cfg.model_dump(mode="json"), "metrics": metrics})
    for file in path.iterdir():
        file.chmod(0o644)  # shipped in the package: readable by all (atomic writes create files 0600)
    return path


def _halve(file: Path) -> None:
    """Store the weights as float16: half the size; `load_into` casts them back to the model's dtype."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(file).items()}
    atomic_write(
        file, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT, "dtype": str(torch.float16)})
    )

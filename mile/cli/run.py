"""The train / eval / predict commands: argument handling and printing around the engine."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mile.config import INFERENCES, ConfigError, load_config, merge_config, override_layer

# The way out of a RunConflict, in this command's words.
RESTART_HINT = (
    "Train into another directory (run.name=... or --run-dir), or pass --restart to delete it and train from "
    "scratch."
)


def train_command(config: Path, overrides: list[str], run_dir: Path | None, resume: bool) -> None:
    """Train into the run directory: resume what is there, skip a finished run, or (`resume=False`) start over."""
    from mile.engine.evaluate import format_metrics
    from mile.engine.lifecycle import default_run_dir, prepare_run
    from mile.engine.rundir import RunDir
    from mile.engine.train import train_run

    cfg = load_config(config, overrides)
    run = RunDir(run_dir or default_run_dir(cfg))
    typer.echo(f"run directory: {run.path}")
    prepared = prepare_run(run, cfg, restart=not resume, way_out=RESTART_HINT)
    if prepared.deleted:
        typer.echo(f"--restart: deleting the previous contents of {run.path}")
    if prepared.action == "done":
        typer.echo(
            f"already done: nothing to train (`mile eval {run.path}` re-evaluates it, --restart retrains)"
        )
        for file in sorted((run.path / "eval").glob("*/metrics.json")):
            typer.echo(format_metrics(json.loads(file.read_text())))
        return
    metrics = train_run(cfg, run, resume=True)  # after a restart there is nothing left to resume
    for split_metrics in metrics.values():
        typer.echo(format_metrics(split_metrics))


def eval_command(
    run_dir: Path, splits: list[str] | None, data: list[str], inference: str | None = None
) -> None:
    from mile.engine.evaluate import format_metrics
    from mile.engine.inference import evaluate_run
    from mile.engine.rundir import RunDir

    run = RunDir(run_dir)
    layer: dict = {"data": {}}  # `--data k.sub=v` is the override `data.k.sub=v`
    for item in data:
        if "=" not in item:
            raise ConfigError(f"--data {item!r} is not of the form key=value")
        layer = merge_config(layer, override_layer(f"data.{item}"))
    chosen = splits or run.config().data.eval_splits
    if inference not in (None, *INFERENCES):
        raise ConfigError(f"--inference {inference!r}: expected generate or rank")
    for metrics in evaluate_run(run, chosen, layer["data"], inference).values():
        typer.echo(format_metrics(metrics))


def probe_command(run_dir: Path, split: str | None, limit: int, seed: int) -> bool:
    """Print and store the probe; True when the model uses both its inputs."""
    from mile.engine.inference import probe_run
    from mile.engine.rundir import RunDir

    run = RunDir(run_dir)
    result = probe_run(run, split, limit, seed)
    split = result["split"]
    lines = [
        f"{split} (n={result['n']}, {result['answer_tokens']} answer tokens, {result['precision']}), "
        "answer loss in nats per token:",
        f"  all{' ' * 4}{_probe_line(result)}",
    ]
    for kind, part in result["by_answer_type"].items():
        lines.append(f"  {kind:<6} {_probe_line(part)}  (n={part['n']})")
    lines.append(f"  the model {result['verdict']}  -> {run.eval_dir(split) / 'probe.json'}")
    typer.echo("\n".join(lines))
    return result["uses_both"]


def _probe_line(part: dict) -> str:
    loss, gap = part["loss"], part["gap"]
    return (
        f"true {loss['true']:.4f}  other image {loss['other_image']:.4f} ({gap['image']:+.4f})  "
        f"other question {loss['other_question']:.4f} ({gap['question']:+.4f})  "
        f"both {loss['both_other']:.4f} ({gap['both']:+.4f})"
    )


def predict_command(
    run_dir: Path, image: Path, questions: list[str], beams: int | None, rank: int = 0
) -> None:
    from mile.engine.inference import answer, load_trained, ranked_answers
    from mile.engine.rundir import RunDir

    session = load_trained(RunDir(run_dir))
    for question, text in zip(questions, answer(session, str(image), questions, beams), strict=True):
        typer.echo(f"Q: {question}\nA: {text}")
    if rank:
        for question, top in zip(
            questions, ranked_answers(session, str(image), questions, rank), strict=True
        ):
            typer.echo(f"ranked candidates for {question!r} (log-likelihood, nats):")
            typer.echo("\n".join(f"  {score:8.3f}  {candidate}" for candidate, score in top))

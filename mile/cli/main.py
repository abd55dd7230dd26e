"""The `mile` command: a thin face over the engine; each command parses arguments and calls one function."""

from __future__ import annotations

import os

# Before torch loads: OpenMP threads that spin while waiting make small ops ~100x slower whenever another
# process holds a core (a tiny-model step took 8.7 s spinning, 69 ms passive on a shared 2-core machine).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="MILE: tower-by-tower PEFT for medical VQA."
)
instruct_app = typer.Typer(no_args_is_help=True, help="Instruction-format medical VQA data.")
app.add_typer(instruct_app, name="instruct")

Overrides = Annotated[
    list[str] | None, typer.Argument(help="config overrides, e.g. train.lr=1e-4 plan.vision=frozen")
]
FinishedRun = Annotated[Path, typer.Argument(help="a finished run directory")]
Rule = Annotated[str, typer.Option(help="closed-question rule: yesno (the paper's tables) or answer_type")]


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    overrides: Overrides = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="run directory (default: run.output_dir/run.name)")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume/--restart",
            help="continue from the last checkpoint (a finished run is left as it is), or delete the run "
            "directory's contents and train from scratch",
        ),
    ] = True,
) -> None:
    """Fine-tune a model as the config says, then evaluate it; everything lands in the run directory."""
    from mile.cli.run import train_command

    train_command(config, overrides or [], run_dir, resume)


@app.command("eval")
def evaluate(
    run_dir: FinishedRun,
    split: Annotated[list[str] | None, typer.Option(help="split(s) to evaluate (repeatable)")] = None,
    data: Annotated[
        list[str] | None, typer.Option(help="data overrides, e.g. --data root=/data/slake")
    ] = None,
    inference: Annotated[
        str | None,
        typer.Option(
            help="generate or rank (pick from the training answers by likelihood); another mode than the run's "
            "eval.inference writes to eval/<mode>/<split>/"
        ),
    ] = None,
) -> None:
    """Evaluate a trained run on any split (default: the run's evaluation splits)."""
    from mile.cli.run import eval_command

    eval_command(run_dir, split, data or [], inference)


@app.command()
def probe(
    run_dir: FinishedRun,
    split: Annotated[
        str | None, typer.Option(help="split (default: the run's first evaluation split)")
    ] = None,
    limit: Annotated[int, typer.Option(help="first N questions of the split (0: all)")] = 256,
    seed: Annotated[int, typer.Option(help="seed of the swaps")] = 0,
    check: Annotated[
        bool, typer.Option("--check", help="exit with code 1 when the model ignores its image or question")
    ] = False,
) -> None:
    """Does the model use its inputs? Answer loss with the true image and question vs another question's."""
    from mile.cli.run import probe_command

    uses_both = probe_command(run_dir, split, limit, seed)
    raise typer.Exit(1 if check and not uses_both else 0)


@app.command()
def predict(
    run_dir: FinishedRun,
    image: Annotated[Path, typer.Option(help="image file")],
    question: Annotated[list[str], typer.Option(help="question (repeatable)")],
    # refused while parsing, before the model loads; the bounds are eval.num_beams's (MAX_BEAMS in mile/config.py,
    # not imported here: it loads torch and peft, seconds before even --help)
    beams: Annotated[
        int | None, typer.Option(min=1, max=64, help="beam count (default: the run's eval.num_beams)")
    ] = None,
    rank: Annotated[
        int, typer.Option(min=0, max=1000, help="also show the N most likely candidate answers, with scores")
    ] = 0,
) -> None:
    """Answer questions about one image with a trained run."""
    from mile.cli.run import predict_command

    predict_command(run_dir, image, question, beams, rank)


@app.command()
def export(
    run_dir: FinishedRun,
    out: Annotated[Path, typer.Argument(help="where to write the checkpoint")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="mile: our standalone checkpoint (LoRA-family adapters merged); peft: peft adapter folders per "
            "tower over a base in our format; transformers: a BlipForQuestionAnswering folder (BLIP-shaped models)",
        ),
    ] = "mile",
) -> None:
    """Write a run's model so that it can leave the run: our format, peft adapters, or transformers' BLIP."""
    from mile.engine.export import export_run
    from mile.engine.rundir import RunDir

    path = export_run(RunDir(run_dir), out, fmt)
    how = {
        "mile": f"use: model.init.kind=mile model.init.path={path}",
        "peft": f"loading: {path / 'README.md'}",
        "transformers": f"use: BlipForQuestionAnswering.from_pretrained('{path}'), see docs/export.md",
    }
    typer.echo(f"exported {run_dir} to {path} ({how[fmt]})")


@app.command()
def modules(
    config: Annotated[Path | None, typer.Option(help="YAML config (default: the built-in defaults)")] = None,
    overrides: Overrides = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the parameter counts as JSON")] = False,
    depth: Annotated[int, typer.Option(help="module tree depth to print")] = 3,
) -> None:
    """Show the module tree, what the plan's methods hit, and trainable / total parameters per tower."""
    from mile.cli.inspect import modules_command

    modules_command(config, overrides or [], as_json, depth)


@app.command()
def demo(
    output_dir: Annotated[Path, typer.Option(help="the demo goes to OUTPUT_DIR/demo, emptied first")] = Path(
        "runs"
    ),
    epochs: Annotated[
        int | None, typer.Option(min=0, help="epochs per plan (with --build-checkpoint: of the pretraining)")
    ] = None,
    build_checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="instead of the demo, rebuild its checkpoint into this folder from VQA-RAD (--vqa-rad) without "
            "the demo's images; the pretraining run goes to OUTPUT_DIR/demo-pretrain"
        ),
    ] = None,
    vqa_rad: Annotated[
        Path | None,
        typer.Option(
            help="VQA-RAD's folder (trainset.json, testset.json, images/) for --build-checkpoint (default: "
            "$MILE_SHARED/data/vqa_rad, MILE_SHARED defaulting to ../shared)"
        ),
    ] = None,
) -> None:
    """Adapt a tiny pretrained model to the bundled VQA-RAD subset with three plans (F-T-T, F-LoRA-LoRA, T-T-T) and
    compare them with the majority-answer baseline: the whole pipeline, no downloads, about 2 minutes on a CPU."""
    import time

    from mile.engine.demo import SPLIT, run_demo
    from mile.engine.demo_checkpoint import rebuild_checkpoint
    from mile.report import write_report
    from mile.report.html import write_html

    start = time.perf_counter()
    if build_checkpoint is not None:
        overrides = [] if epochs is None else [f"train.epochs={epochs}"]
        path = rebuild_checkpoint(
            build_checkpoint, vqa_rad, output_dir / "demo-pretrain", overrides, typer.echo
        )
        typer.echo(f"wrote the demo checkpoint to {path} in {time.perf_counter() - start:.0f} s")
        return
    result = run_demo(output_dir, epochs, typer.echo)
    report = write_report(result.root, split=SPLIT, baselines={result.baseline_name: result.baseline.metrics})
    body = report.markdown.split("## Plots")[0]
    typer.echo("\n" + body[body.index("| ") :].strip() + "\n")  # the table and its caption
    typer.echo("\n".join(result.verdict()))
    page = write_html(report, result.root, result.root / "report.html")  # thumbnails: the bundled CC0 images
    plots = ", ".join(f.name for f in report.files[2:])
    typer.echo(f"report: {report.files[0]} (+ report.csv), {page.file} (in a browser: the questions with")
    typer.echo(f"their images, two plans side by side); plots: {plots} (same folder)")
    typer.echo("runs: " + ", ".join(str(p) for p in result.runs.values()))
    typer.echo(f"mile demo took {time.perf_counter() - start:.0f} s")


L = {"rich_help_panel": "Where the runs train"}  # the launcher options, grouped in --help


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="sweep YAML (base config + grid / runs)")],
    force: Annotated[bool, typer.Option(help="retrain runs that are done (from scratch)")] = False,
    shard: Annotated[
        str | None, typer.Option(help="run only shard i of n, e.g. 2/4: runs i, i+n, ... (1-based)")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="list the runs with their trainable parameters; train nothing")
    ] = False,
    output_dir: Annotated[Path | None, typer.Option(help="where the run directories go")] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="run only plans or run names matching this shell pattern, e.g. 'F-*' (repeatable)"),
    ] = None,
    status: Annotated[
        bool, typer.Option(help="show every run's state (and SLURM job); train nothing")
    ] = False,
    wait: Annotated[
        bool, typer.Option(help="with --status: follow until no run is queued or running")
    ] = False,
    launcher: Annotated[
        str | None,
        typer.Option(help="sequential (default), local (--jobs at once) or slurm (a job array)", **L),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option(help="local: runs at once (one GPU each, or threads split)", **L)
    ] = None,
    partition: Annotated[str | None, typer.Option(help="slurm partition", **L)] = None,
    account: Annotated[str | None, typer.Option(help="slurm account", **L)] = None,
    qos: Annotated[str | None, typer.Option(help="slurm QOS", **L)] = None,
    time: Annotated[
        str | None, typer.Option(help="slurm time per run: minutes or [D-]HH:MM[:SS]", **L)
    ] = None,
    nodes: Annotated[int | None, typer.Option(help="slurm nodes per run", **L)] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs per node (one process each)", **L)] = None,
    cpus_per_task: Annotated[int | None, typer.Option(help="CPUs per process", **L)] = None,
    mem_gb: Annotated[float | None, typer.Option(help="memory per node in GB", **L)] = None,
    array_parallelism: Annotated[int | None, typer.Option(help="slurm: array tasks at once", **L)] = None,
) -> None:
    """Train every run of a sweep that is not done yet (skips done runs, resumes interrupted ones), here one after
    another, N at once on this machine, or as a SLURM job array; or show where each run stands."""
    from mile.cli.sweep import sweep_command

    options = {"kind": launcher, "jobs": jobs, "partition": partition, "account": account, "qos": qos}
    options |= {"time": time, "nodes": nodes, "gpus_per_node": gpus_per_node, "cpus_per_task": cpus_per_task}
    options |= {"mem_gb": mem_gb, "array_parallelism": array_parallelism}
    view = "wait" if wait else "status" if status else None
    raise typer.Exit(sweep_command(sweep_file, force, shard, dry_run, output_dir, only, options, view))


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="folder holding run directories (searched recursively)")],
    split: Annotated[
        str | None, typer.Option(help="evaluation split (default: each run's first eval split)")
    ] = None,
    rule: Rule = "yesno",
    out: Annotated[
        Path | None, typer.Option(help="where report.md/.csv and plots go (default: DIRECTORY)")
    ] = None,
    label: Annotated[
        str,
        typer.Option(
            help="Setting column: config (the config keys that differ between rows) or dir (the run directories' "
            "names without a trailing -s<seed>)"
        ),
    ] = "config",
    html: Annotated[
        Path | None,
        typer.Option(
            help="also write one self-contained HTML page (sortable table, plots, each run's questions, two-run "
            "comparison) to this file, or to report.html in this folder"
        ),
    ] = None,
    images: Annotated[
        str, typer.Option(help="with --html: embed (a thumbnail of each question's image) or none")
    ] = "embed",
    inference: Annotated[
        str | None,
        typer.Option(
            help="tabulate the generate or the rank answers of every run, each read where its run keeps them "
            "(default: each run's own eval.inference)"
        ),
    ] = None,
) -> None:
    """Table (Markdown + CSV, the paper's layout, seeds aggregated) and plots over finished runs."""
    from mile.cli.report import report_command

    report_command(directory, split, rule, out, label, html, images, inference)


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="a run directory (or a kept run record) with predictions")],
    run_b: Annotated[Path, typer.Argument(help="the run to compare it with, evaluated on the same split")],
    split: Annotated[
        str | None, typer.Option(help="evaluation split (default: the first run's first eval split)")
    ] = None,
    rule: Rule = "yesno",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    inference: Annotated[
        str | None,
        typer.Option(
            help="compare the generate or the rank answers of both runs, each read where its run keeps them "
            "(eval/<split>/ for the run's own eval.inference, eval/<mode>/<split>/ for `mile eval --inference`)"
        ),
    ] = None,
) -> None:
    """Two runs question by question: accuracies, discordant questions and the exact McNemar test."""
    from mile.cli.report import compare_command

    compare_command(run_a, run_b, split, rule, as_json, inference)


@app.command("app")
def app_command(
    runs_dir: Annotated[
        Path, typer.Argument(help="a directory of runs (finished runs with weights are offered)")
    ],
    host: Annotated[
        str, typer.Option(help="address to serve on (127.0.0.1: this machine only)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to serve on")] = 7860,
    report: Annotated[
        Path | None, typer.Option(help="an HTML report (mile report --html) to show under Results")
    ] = None,
) -> None:
    """A local web app (Gradio, the `app` extra): ask a trained run about an image; see its beams and ranked
    candidates with their scores, and the report."""
    from mile.app import launch

    launch(runs_dir, host, port, report)


@instruct_app.command("build")
def instruct_build(
    source: Annotated[
        list[str], typer.Option(help="NAME=ROOT or NAME:SPLIT[,SPLIT]=ROOT (slake, vqa_rad); repeatable")
    ],
    out: Annotated[Path, typer.Option(help="output JSON file")],
    split: Annotated[
        list[str] | None, typer.Option(help="splits for sources that name none (default: train)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of option order and distractors")] = 0,
    templates: Annotated[
        str | None, typer.Option(help="template set file (default: the authors' six)")
    ] = None,
) -> None:
    """Turn SLAKE / VQA-RAD splits into instruction records (six templates, options, seeded)."""
    from mile.instruct.build import build_instruction_data

    summary = build_instruction_data(source, split or ["train"], out, seed, templates)
    typer.echo(json.dumps(summary, indent=2))


def main() -> None:
    """Entry point: user errors (bad config, data, checkpoint, plan) print one clear message, exit code 2."""
    from mile.cli.errors import run_guarded

    run_guarded(app)


if __name__ == "__main__":
    main()

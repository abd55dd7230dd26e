"""`mile demo`: the tiny checkpoint shipped with the package (mile.engine.demo_checkpoint), adapted to the bundled
40-image VQA-RAD subset with three plans and measured against the majority-answer baseline.

    result = run_demo(Path("runs"))    # runs/demo/<plan>/ run directories, each trained, evaluated and probed
    result.best, result.margin()       # the best plan, and its lead over the baseline in points (global)

Each plan trains through the engine's one path (lifecycle.prepare_run + train.train_run, as `mile train
--restart`) on configs/demo-adapt.yaml. The CLI then writes the report (mile.report, the baseline as its first
row) and prints the verdict.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mile.config import Config, load_config
from mile.data.answers import normalize_answer
from mile.data.sample import Sample
from mile.engine.datasets import load_split, load_train
from mile.engine.demo_checkpoint import checkpoint_dir, resource
from mile.engine.inference import probe_run
from mile.engine.lifecycle import prepare_run
from mile.engine.metrics import score
from mile.engine.probe import UNUSED_BELOW
from mile.engine.rundir import RunDir
from mile.engine.train import train_run
from mile.instruct.leaks import find_leaks

# Three rows of the paper's table: the ViT frozen and both text towers fully trained; the ViT frozen and LoRA on
# both text towers (0.4 % of the parameters: the tiny model is mostly word embeddings, which LoRA leaves alone);
# everything trained. The frozen-ViT plans read the checkpoint's image features through the feature cache.
PLANS = ("F-T-T", "F-LoRA-LoRA", "T-T-T")
SPLIT = "test"
RULE = "yesno"  # closed = yes/no ground truth, the paper's rule and the report's default
# points of global accuracy above the majority answer that read as "clearly learnt something"
CLEAR_MARGIN = 8.0
PROGRESS = "progress.log"  # the training progress bars, out of the way of the summary


@dataclass
class Baseline:
    """The most frequent training answer, given to every question (the accuracy of a model that learnt only the
    answer prior); `metrics` is shaped like a run's metrics.json."""

    answer: str
    metrics: dict[str, Any]


@dataclass
class DemoResult:
    root: Path
    baseline: Baseline
    runs: dict[str, Path] = field(default_factory=dict)  # plan -> run directory
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan -> metrics on SPLIT
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # plan -> probe.json
    repeated: list[str] = field(default_factory=list)  # SPLIT question ids whose image and question train has
    clean: dict[str, float] = field(default_factory=dict)  # plan / "majority" -> global accuracy without them

    @property
    def best(self) -> str:
        return max(self.metrics, key=lambda plan: self.metrics[plan]["global"]["acc"])

    def margin(self, plan: str | None = None) -> float:
        """How far `plan` (default: the best) is above the baseline, in points of global accuracy."""
        acc = self.metrics[plan or self.best]["global"]["acc"]
        return 100 * (acc - self.baseline.metrics["global"]["acc"])

    @property
    def baseline_name(self) -> str:
        return f"majority answer ({self.baseline.answer!r} to every question)"

    def verdict(self) -> list[str]:
        """The best plan against the baseline, what the probe says about it, and the same without the test
        questions the training split repeats."""
        best, base = self.best, self.baseline.metrics
        mine, margin = self.metrics[best], self.margin()
        lines = [
            f"best plan {best} {_how(margin)} the majority-answer baseline: global {_pct(mine['global']['acc'])} vs "
            f"{_pct(base['global']['acc'])} ({margin:+.2f} points); open {_pct(_group(mine, 'open'))} vs "
            f"{_pct(_group(base, 'open'))}, closed {_pct(_group(mine, 'closed'))} vs {_pct(_group(base, 'closed'))}"
            f" (n={mine['n']}, closed = yes/no answers)"
        ]
        probe = self.probes.get(best)
        if probe:
            gap = probe["gap"]
            hint = f" (under {UNUSED_BELOW} would mean it ignores that input)" if probe["uses_both"] else ""
            lines.append(
                f"probe of {best}: another question's image raises its answer loss by {gap['image']:.3f} nats per "
                f"token, another question's text by {gap['question']:.3f}: the model {probe['verdict']}{hint}"
            )
        if self.repeated:
            lines.append(
                f"VQA-RAD repeats {len(self.repeated)} of these {mine['n']} test questions (same image and "
                f"question) in the training split; without them: {best} {_pct(self.clean[best])} vs majority "
                f"{_pct(self.clean['majority'])}"
            )
        return lines


def _how(margin: float) -> str:
    if margin >= CLEAR_MARGIN:
        return "clearly beats"
    return "beats, not clearly," if margin > 0 else "is not above"


def majority_baseline(train: list[Sample], test: list[Sample]) -> Baseline:
    """Score the most frequent (normalised) training answer as the answer to every test question; ties go to
    the answer met first."""
    answer = Counter(normalize_answer(s.answer) for s in train).most_common(1)[0][0]
    return Baseline(answer, score((answer, s.answer, s.answer_type) for s in test))


def demo_config(plan: str, root: Path, epochs: int | None = None, checkpoint: Path | None = None) -> Config:
    """configs/demo-adapt.yaml for one plan, starting from the shipped checkpoint, run directory root/<plan>."""
    overrides = [
        f"plan={plan}",
        f"model.init.path={checkpoint or checkpoint_dir()}",
        f"run.output_dir={root}",
        f"run.name={plan}",
    ]
    return load_config(resource("configs", "demo-adapt.yaml"), overrides + _epochs(epochs))


def _epochs(epochs: int | None) -> list[str]:
    return [] if epochs is None else [f"train.epochs={epochs}"]


def run_demo(output_dir: Path, epochs: int | None = None, echo: Callable[[str], Any] = print) -> DemoResult:
    """Train, evaluate and probe every plan into `<output_dir>/demo/<plan>`, after emptying `<output_dir>/demo`
    (a demo always starts over, as it always did)."""
    root = Path(output_dir) / "demo"
    if root.exists():
        echo(f"deleting the previous demo in {root}")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    configs = {plan: demo_config(plan, root, epochs) for plan in PLANS}
    first = configs[PLANS[0]]
    train, test = load_train(first).samples, load_split(first, SPLIT).samples
    result = DemoResult(root, majority_baseline(train, test))
    result.repeated = find_leaks(train, test).leaked_evaluation_ids
    echo(
        f"adapting the tiny checkpoint {first.model.init.path} (VQA-RAD without these images) to the bundled "
        f"subset: {len(train)} training / {len(test)} {SPLIT} questions, {first.train.epochs} epochs per plan; "
        f"training progress in {root / PROGRESS}"
    )
    for k, (plan, cfg) in enumerate(configs.items(), 1):
        run = RunDir(root / plan)
        prepare_run(run, cfg, restart=True)
        with _progress_to(root / PROGRESS):
            result.metrics[plan] = train_run(cfg, run)[SPLIT]
            result.probes[plan] = probe_run(run, SPLIT)
        result.runs[plan] = run.path
        echo(f"[{k}/{len(configs)}] {plan}: {_summary(run, result.metrics[plan])}")
    kept = [s for s in test if s.id not in set(result.repeated)]
    result.clean = {plan: _accuracy(path, kept) for plan, path in result.runs.items()}
    result.clean["majority"] = score((result.baseline.answer, s.answer, s.answer_type) for s in kept)[
        "global"
    ]["acc"]
    return result


@contextlib.contextmanager
def _progress_to(file: Path) -> Iterator[None]:
    """Progress bars (stderr) into `file`: three plans of epoch bars would bury the summary."""
    with open(file, "a", encoding="utf-8") as handle, contextlib.redirect_stderr(handle):
        yield


def _summary(run: RunDir, metrics: dict[str, Any]) -> str:
    params = json.loads((run.path / "params.json").read_text())
    wall_s = json.loads((run.path / "train_stats.json").read_text()).get("wall_s")  # none after 0 epochs
    trained = f"{params['trainable']:,} of {params['total']:,} parameters trainable"
    return (
        f"global {_pct(metrics['global']['acc'])}, closed {_pct(_group(metrics, 'closed'))}, open "
        f"{_pct(_group(metrics, 'open'))}; {trained}, "
        + ("not trained (0 epochs)" if wall_s is None else f"trained in {wall_s:.0f} s")
    )


def _group(metrics: dict[str, Any], group: str) -> float | None:
    return metrics["rules"][RULE][group]["acc"]


def _pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.2f} %"


def _accuracy(run: Path, samples: list[Sample]) -> float:
    """Global accuracy of a run's SPLIT predictions over `samples` only."""
    lines = (run / "eval" / SPLIT / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    correct = {row["id"]: row["correct"] for row in map(json.loads, lines)}
    return sum(correct[s.id] for s in samples) / len(samples)

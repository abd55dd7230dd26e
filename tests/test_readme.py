"""The README's examples run as written (the sweep example on tiny settings), so that what it promises holds."""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository


def test_the_sweep_example_trains_every_run(tmp_path, shared_dir, mile_cli):
    """The example as written (its datasets, plans and evaluation splits), on the tiny model for a few steps."""
    (example,) = [b for b in _blocks("yaml") if b.startswith("base:")]
    sweep = yaml.safe_load(example)
    sweep["base"] = str(ROOT / "configs" / "slake" / sweep["base"].removeprefix("../slake/"))
    sweep["output_dir"] = str(tmp_path / "runs")
    sweep["overrides"] = {
        **sweep["overrides"],
        "model": {"size": "tiny", "image_size": 32, "init": {"kind": "random"}},
        "data.limit": 8,
        "train.epochs": 1,
        "eval.num_beams": 1,
    }
    sweep["grid"]["train.lr"] = sweep["grid"]["train.lr"][:1]
    sweep["grid"]["train.seed"] = sweep["grid"]["train.seed"][:1]
    for entry in sweep["grid"]["data"]:
        entry["root"] = str(shared_dir / "data" / Path(entry["root"]).name)
    file = tmp_path / "sweep.yaml"
    file.write_text(yaml.safe_dump(sweep))
    code, out, err = mile_cli("sweep", file)
    assert code == 0, out[-3000:] + err[-3000:]
    assert "7 run(s): 7 trained, 0 skipped (already done), 0 failed" in out  # 3 plans x 2 datasets + 1 run


@pytest.mark.parametrize(
    "command",
    [
        "mile modules --config configs/paper/T-T-LoRA_r8.yaml --json",
        "mile sweep configs/sweeps/mile-small/lora.yaml --dry-run",
    ],
)
def test_readme_commands_that_run_offline(command, mile_cli):
    assert command in README  # still the README's command
    code, out, err = mile_cli(*command.split()[1:])
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert out.strip()


TINY = [
    "model.size=tiny",
    "model.image_size=32",
    "model.init.kind=random",
    "data.limit=8",
    "train.epochs=1",
    "eval.num_beams=1",
]


def _everyday_commands() -> list[str]:
    (block,) = [b for b in _blocks("bash") if "mile train configs/slake/mile-small.yaml " in b]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("mile ")]


def test_the_everyday_use_block_runs_as_written(tmp_path, monkeypatch, shared_dir, mile_cli):
    """Each command of "Everyday use", in order, on tiny settings: `runs/<name>` is the run the first command
    trains, `scan.jpg` a SLAKE image, `[--check]` run both ways."""
    commands = _everyday_commands()
    assert [c.split()[1] for c in commands] == [
        "train", "train", "eval", "eval", "predict", "probe", "modules", "export"
    ]  # fmt: skip
    run = tmp_path / "runs" / "demo"
    image = shared_dir / "data" / "slake" / "imgs" / "xmlab1" / "source.jpg"
    monkeypatch.setenv("MILE_SHARED", str(shared_dir))
    for index, command in enumerate(commands):
        args = shlex.split(command)[1:]
        if args[0] == "train":  # the second train is another config: another run
            args += [
                *TINY,
                f"run.output_dir={tmp_path / 'runs'}",
                f"run.name={'demo' if index == 0 else 'other'}",
            ]
        args = [a.replace("runs/<name>", str(run)).replace("scan.jpg", str(image)) for a in args]
        variants = [[a for a in args if a != "[--check]"]]
        if "[--check]" in args:
            variants.append([a.strip("[]") for a in args])
        for variant in variants:
            code, out, err = mile_cli(*variant)
            allowed = {0, 1} if "--check" in variant else {0}  # --check: 1 means the model ignores an input
            assert code in allowed and "Traceback" not in err, f"{variant}\n{out[-2000:]}\n{err[-2000:]}"
            assert out.strip(), variant
    assert (run / "status.json").exists() and (tmp_path / "runs" / "other" / "status.json").exists()
    assert (run / "eval" / "validate" / "metrics.json").exists() and (
        run / "eval" / "validate" / "probe.json"
    ).exists()
    assert (
        json.loads((run / "eval" / "generate" / "validate" / "metrics.json").read_text())["inference"]
        == "generate"
    )
    assert (run.parent / "demo-export").is_dir()


def _optional_parts(args: list[str]) -> list[str]:
    """`[--rule yesno|answer_type]` -> `--rule yesno`, `[--json]` -> `--json`: every option shown, first choice."""
    out = []
    for arg in args:
        arg = arg.strip("[]")
        out.append(arg.split("|")[0])
    return out


def test_the_sweep_block_runs_as_written(tmp_path, monkeypatch, shared_dir, mile_cli):
    """Each command of the sweep and report block on a tiny two-seed sweep of two LoRA plans."""
    (block,) = [b for b in _blocks("bash") if "mile sweep configs/sweeps/mile-small/lora.yaml --dry-run" in b]
    commands = [shlex.split(line.split("  #")[0]) for line in block.splitlines() if line.startswith("mile ")]
    out_dir = tmp_path / "runs"
    sweep = {
        "base": str(ROOT / "configs" / "slake" / "mile-small.yaml"),
        "output_dir": str(out_dir),
        "overrides": {"model": {"size": "tiny", "image_size": 32, "init": {"kind": "random"}},
                      "data.limit": 8, "train.epochs": 1, "eval.num_beams": 1},
        "grid": {"plan": ["F-LoRA-LoRA r4", "T-T-T"], "train.seed": [1, 2]},
    }  # fmt: skip
    file = tmp_path / "sweep.yaml"
    file.write_text(yaml.safe_dump(sweep))
    monkeypatch.setenv("MILE_SHARED", str(shared_dir))
    seen = []
    for args in commands:
        args = [str(file) if a in ("configs/sweeps/mile-small/lora.yaml", "SWEEP.yaml") else a for a in args]
        args = _optional_parts(args)
        args = [str(out_dir) if a == "runs/mile-small-slake" else a for a in args]
        args = [str(tmp_path / "report") if a == "DIR" else a for a in args]
        if "RUN_A" in args:
            run_a, run_b = sorted(p.parent for p in out_dir.glob("T-T-T*/status.json"))
            args = [str(run_a) if a == "RUN_A" else str(run_b) if a == "RUN_B" else a for a in args]
        code, out, err = mile_cli(*args[1:])
        assert code == 0 and "Traceback" not in err, f"{args}\n{out[-2000:]}\n{err[-2000:]}"
        seen.append((args[1], out))
    assert [name for name, _ in seen] == ["sweep"] * 5 + ["report", "compare"]
    assert "4 run(s): 4 trained" in seen[1][1]  # the sweep
    assert "1 run(s): 0 trained, 1 skipped" in seen[2][1]  # --shard 2/4: the second of four
    assert "4 run(s): 4 trained" in seen[3][1]  # --force
    assert "4 run(s) matching F-* or T-T-T" in seen[4][1]  # both plans match one of the two patterns
    assert "4 run(s): 0 trained, 4 skipped" in seen[4][1]
    assert (tmp_path / "report").is_dir() and any((tmp_path / "report").iterdir())
    paired = json.loads(seen[6][1])  # --json: the two runs, then per question group the paired counts
    assert paired["split"] == "validate" and paired["rule"] == "yesno"
    assert {"only_a", "only_b", "p_mcnemar"} <= set(paired["global"])

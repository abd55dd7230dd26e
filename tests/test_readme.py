"""The README's examples run as written (the sweep example on tiny settings), so that what it promises holds."""

import re
import sys
from pathlib import Path

import pytest
import yaml

from mile.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def run_mile(args, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["mile", *map(str, args)])
    monkeypatch.chdir(ROOT)  # the README's paths are relative to the repository
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_sweep_example_trains_every_run(tmp_path, monkeypatch, capsys, shared_dir):
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
    code, out, err = run_mile(["sweep", file], monkeypatch, capsys)
    assert code == 0, out[-3000:] + err[-3000:]
    assert "7 run(s): 7 trained, 0 skipped (already done), 0 failed" in out  # 3 plans x 2 datasets + 1 run


@pytest.mark.parametrize(
    "command",
    [
        "mile modules --config configs/paper/T-T-LoRA_r8.yaml --json",
        "mile sweep configs/sweeps/mile-small/lora.yaml --dry-run",
    ],
)
def test_readme_commands_that_run_offline(command, monkeypatch, capsys):
    assert command in README  # still the README's command
    code, out, err = run_mile(command.split()[1:], monkeypatch, capsys)
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert out.strip()

"""Every command with bad arguments, configs and paths: exit code 2, one clear message naming what is wrong, never a
traceback. Run in-process through the real entry point (`mile.cli.main.main`), so that anything that escapes the
CLI's error handling fails the test with its traceback."""

import sys
from pathlib import Path

import pytest

from mile.cli.main import main


def run_mile(args, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mile", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished tiny run of the demo's base config (one epoch)."""
    out = tmp_path_factory.mktemp("runs")
    demo = Path(__file__).resolve().parents[2] / "mile" / "resources" / "configs" / "demo.yaml"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["mile", "train", str(demo), f"run.output_dir={out}", "train.epochs=1"])
    try:
        with pytest.raises(SystemExit) as exit_:
            main()
            raise SystemExit(0)
        assert exit_.value.code in (0, None)
    finally:
        mp.undo()
    return out / "demo"


@pytest.fixture(scope="module")
def files(tmp_path_factory, done_run):
    root = tmp_path_factory.mktemp("inputs")
    (root / "garbled.yaml").write_text("train: {lr: [\n")
    (root / "dupes.yaml").write_text("train: {lr: 0.1}\ntrain: {epochs: 2}\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "badvalues.yaml").write_text("model: {size: tiny, image_size: 30}\ntrain: {lr: -1}\n")
    (root / "sweep.yaml").write_text("base: nowhere.yaml\ngrid: {train.lr: [0.1]}\n")
    (root / "notimage.jpg").write_text("not an image")
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    demo = Path(__file__).resolve().parents[2] / "mile" / "resources" / "configs" / "demo.yaml"
    sweep = root / "demo_sweep.yaml"
    sweep.write_text(f"base: {demo}\noutput_dir: {root / 'sweeps'}\ngrid: {{plan: [T-T-T]}}\n")
    from mile.config import load_config
    from mile.engine.rundir import RunDir
    from mile.sweep.spec import load_sweep

    loaded = load_sweep(sweep)  # its one run's folder, written by another config
    RunDir(loaded.run_dir(loaded.runs[0])).create(load_config(demo, ["train.lr=0.123"]))
    return {"root": root, "run": done_run, "demo": demo}


CASES = {
    # name: (args, what the message must mention)
    "train: missing config": (["train", "{root}/nope.yaml"], "nope.yaml"),
    "train: garbled YAML": (["train", "{root}/garbled.yaml"], "garbled.yaml"),
    "train: duplicate keys": (["train", "{root}/dupes.yaml"], "duplicate key 'train'"),
    "train: not a mapping": (["train", "{root}/list.yaml"], "mapping"),
    "train: not UTF-8": (["train", "{root}/binary.yaml"], "binary.yaml"),
    "train: bad values": (["train", "{root}/badvalues.yaml"], "train.lr"),
    "train: unknown key": (["train", "{root}/nope.yaml".replace("nope", "garbled"), "trian.lr=1"], "garbled"),
    "train: an override where the config goes": (["train", "model.size=tiny"], "looks like an override"),
    "train: override without =": (["train", "{demo}", "--run-dir", "{root}/r", "train.lr"], "key.sub=value"),
    "train: unknown override": (["train", "{demo}", "traan.lr=0.1"], "traan"),
    "train: image size not a patch multiple": (["train", "{demo}", "model.image_size=30"], "image_size"),
    "train: missing data root": (["train", "{demo}", "data.dataset=slake", "data.root={root}/none"], "none"),
    "train: unknown plan method": (["train", "{demo}", "plan.text_decoder=lorra"], "lorra"),
    "train: feature cache with a trained ViT": (
        ["train", "{demo}", "plan.vision=full", "train.feature_cache=memory", "--run-dir", "{root}/fc"],
        "feature_cache",
    ),
    "eval: not a run directory": (["eval", "{root}"], "config.yaml"),
    "eval: missing directory": (["eval", "{root}/none"], "none"),
    "eval: unknown split": (["eval", "{run}", "--split", "nosuch"], "nosuch"),
    "eval: bad --data": (["eval", "{run}", "--data", "limit"], "key=value"),
    "eval: bad --data value": (["eval", "{run}", "--data", "limit=-3"], "limit"),
    "predict: missing image": (
        ["predict", "{run}", "--image", "{root}/none.jpg", "--question", "what?"],
        "none.jpg",
    ),
    "predict: not an image": (
        ["predict", "{run}", "--image", "{root}/notimage.jpg", "--question", "q?"],
        "notimage",
    ),
    "predict: blank question": (
        ["predict", "{run}", "--image", "{root}/notimage.jpg", "--question", " "],
        "blank",
    ),
    "predict: not a run": (
        ["predict", "{root}", "--image", "{root}/notimage.jpg", "--question", "q?"],
        "config.yaml",
    ),
    "eval: unknown inference": (["eval", "{run}", "--inference", "maybe"], "--inference 'maybe'"),
    "probe: unknown split": (["probe", "{run}", "--split", "nosuch"], "nosuch"),
    "probe: not a run": (["probe", "{root}/none"], "none"),
    "export: into an existing file": (["export", "{run}", "{root}/notimage.jpg"], "notimage.jpg"),
    "export: not a run": (["export", "{root}/none", "{root}/out"], "none"),
    "export: unknown format": (["export", "{run}", "{root}/out", "--format", "onnx"], "format 'onnx'"),
    "export: peft format of a run that is not there": (
        ["export", "{root}/none", "{root}/out", "--format", "peft"],
        "none",
    ),
    "modules: bad image size": (["modules", "model.size=tiny", "model.image_size=30"], "image_size"),
    "modules: missing config": (["modules", "--config", "{root}/nope.yaml"], "nope.yaml"),
    "modules: unknown size": (["modules", "model.size=giant"], "giant"),
    "demo: negative epochs": (["demo", "--epochs", "-1", "--output-dir", "{root}/d"], "--epochs"),
    "demo: no VQA-RAD to build the checkpoint from": (
        ["demo", "--build-checkpoint", "{root}/ck", "--vqa-rad", "{root}/none", "--output-dir", "{root}/d"],
        "none",
    ),
    "sweep: missing file": (["sweep", "{root}/nope.yaml"], "nope.yaml"),
    "sweep: missing base": (["sweep", "{root}/sweep.yaml", "--output-dir", "{root}/sw"], "nowhere.yaml"),
    "sweep: bad shard": (["sweep", "{root}/sweep.yaml", "--shard", "3/2"], "--shard '3/2'"),
    "sweep: --only matches nothing": (["sweep", "{root}/demo_sweep.yaml", "--only", "X-*"], "--only X-*"),
    "sweep: a run of another config": (["sweep", "{root}/demo_sweep.yaml"], "or --force to retrain"),
    "sweep: slurm without SLURM": (
        ["sweep", "{root}/demo_sweep.yaml", "--launcher", "slurm", "--output-dir", "{root}/s2"],
        "sbatch and srun",
    ),
    "sweep: unknown launcher": (["sweep", "{root}/demo_sweep.yaml", "--launcher", "cloud"], "launcher.kind"),
    "sweep: no jobs": (
        ["sweep", "{root}/demo_sweep.yaml", "--launcher", "local", "--jobs", "0"],
        "launcher.jobs",
    ),
    "sweep: local, a run of another config": (
        ["sweep", "{root}/demo_sweep.yaml", "--launcher", "local"],
        "or --force to retrain",
    ),
    "sweep: bad time": (["sweep", "{root}/demo_sweep.yaml", "--time", "soon"], "launcher.time"),
    "report: missing folder": (["report", "{root}/none"], "none"),
    "report: unknown rule": (["report", "{run}", "--rule", "maybe"], "maybe"),
    "report: unknown label": (["report", "{run}", "--label", "maybe"], "maybe"),
    "compare: missing run": (["compare", "{run}", "{root}/none"], "none"),
    "compare: unknown rule": (["compare", "{run}", "{run}", "--rule", "maybe"], "maybe"),
    "instruct build: missing root": (
        ["instruct", "build", "--source", "slake={root}/none", "--out", "{root}/ib.json"],
        "none",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_message_and_exit_code_2(name, files, capsys, monkeypatch):
    args, mention = CASES[name]
    args = [a.format(**files) for a in args]
    code, out, err = run_mile(args, capsys, monkeypatch)
    assert code == 2, f"{name}: exit {code}\n{out[-2000:]}\n{err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    assert mention in err, f"{name}: the message does not name {mention!r}:\n{err[-2000:]}"

"""Mixed precision: what `auto` picks and why, fp16 on a CPU refused, and a run that records only the precision
it computed in (bf16 autocast really runs: its losses differ from fp32 ones, within a stated tolerance)."""

import json

import pytest
import torch

from mile.config import ConfigError
from mile.engine import precision as precision_module
from mile.engine.inference import load_trained, probe_run
from mile.engine.precision import inference_precision, resolve_precision
from mile.engine.rundir import RunDir
from mile.engine.train import train_run

# The tiny model's mean token loss (about 10 nats) moved by at most 2.4e-5 (relative) over 6 steps under bf16;
# a loss computed in bf16 itself (resolution 0.06 at 10) would miss this bound.
LOSS_RTOL = 1e-3


@pytest.fixture
def cpu_feature(monkeypatch):
    """Pretend the CPU has (a feature name) or lacks (None) native bf16."""

    def set_feature(feature):
        monkeypatch.setattr(precision_module, "cpu_bf16_feature", lambda: feature)

    return set_feature


def test_auto_picks_bf16_only_where_the_cpu_multiplies_it_natively(cpu_feature):
    cpu_feature("avx512_bf16")
    chosen = resolve_precision("auto", "cpu")
    assert (chosen.used, chosen.dtype) == ("bf16", torch.bfloat16)
    assert "AVX512_BF16" in chosen.reason
    cpu_feature("amx_bf16")
    assert "AMX_BF16" in resolve_precision("auto", "cpu").reason
    cpu_feature(None)
    chosen = resolve_precision("auto", "cpu")
    assert (chosen.used, chosen.dtype) == ("fp32", torch.float32)
    assert "neither AVX512_BF16 nor AMX" in chosen.reason


def test_explicit_requests_are_kept_and_explained(cpu_feature):
    cpu_feature(None)
    slow = resolve_precision("bf16", "cpu")
    assert slow.used == "bf16" and "emulated" in slow.reason  # honoured, with the warning in the log
    assert resolve_precision("fp32", "cpu").used == "fp32"
    cpu_feature("avx512_bf16")
    assert resolve_precision("fp32", "cpu").used == "fp32"


def test_fp16_on_a_cpu_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"train.mixed_precision=fp16 needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    # a run trained in fp16 on a GPU can still be evaluated on a CPU, in what `auto` picks there
    used = inference_precision("fp16", "cpu")
    assert used.used == resolve_precision("auto", "cpu").used and "fp16 run on a CPU" in used.reason


def test_fp16_training_on_a_cpu_stops_before_the_run_exists(tiny_config, tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match="fp16"):
        train_run(tiny_config("train.mixed_precision=fp16", "train.device=cpu"), run)
    assert not run.path.exists()


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_a_run_records_the_precision_it_computed_in(tiny_config, tmp_path, cpu_feature):
    runs = {}
    for feature, name in ((None, "fp32"), ("avx512_bf16", "bf16")):
        cpu_feature(feature)
        runs[name] = RunDir(tmp_path / name)
        train_run(tiny_config("train.mixed_precision=auto"), runs[name])
    for name, run in runs.items():
        env = run.read_json("env.json")["precision"]
        assert env["requested"] == "auto" and env["used"] == name and env["device"] == "cpu"
        assert run.read_json("train_stats.json")["precision"] == name
        assert run.read_json("eval/test/metrics.json")["precision"] == name
        assert f"precision: {name} on cpu" in (run / "log.txt").read_text()
    explicit = RunDir(tmp_path / "explicit")
    train_run(tiny_config("train.mixed_precision=fp32"), explicit)
    # auto without native bf16 is exactly fp32; with it, autocast really ran: the losses move, a little
    assert _losses(runs["fp32"]) == _losses(explicit)
    a, b = torch.tensor(_losses(runs["fp32"])), torch.tensor(_losses(runs["bf16"]))
    assert not torch.equal(a, b)
    torch.testing.assert_close(b, a, rtol=LOSS_RTOL, atol=0)


def test_probe_and_predict_run_under_the_runs_precision(tiny_config, tmp_path, cpu_feature, demo_data):
    cpu_feature("avx512_bf16")
    run = RunDir(tmp_path / "run")
    train_run(tiny_config("train.epochs=1", "plan.text_decoder=lora"), run)
    dtypes = set()
    session = load_trained(run)
    hook = session.model.text_decoder.lm_head.dense.register_forward_hook(
        lambda module, args, out: dtypes.add(out.dtype)
    )
    from mile.engine.inference import answer

    answer(session, str(sorted((demo_data / "images").iterdir())[0]), ["is this a ct?"])
    hook.remove()
    assert dtypes == {torch.bfloat16}
    result = probe_run(run, limit=8)
    assert result["precision"] == "bf16"
    assert json.loads((run.eval_dir("test") / "probe.json").read_text())["precision"] == "bf16"
    cpu_feature(None)
    assert probe_run(run, limit=8)["precision"] == "fp32"


@pytest.mark.slow  # inductor compiles forward and backward: about a minute even for the tiny model
def test_compiled_training_forward_trains_like_the_eager_one(tiny_config, tmp_path):
    runs = {}
    for compile_ in (False, True):
        runs[compile_] = RunDir(tmp_path / f"compile-{compile_}")
        train_run(tiny_config("train.epochs=1", f"train.compile={str(compile_).lower()}"), runs[compile_])
    eager, compiled = (torch.tensor(_losses(runs[c])) for c in (False, True))
    torch.testing.assert_close(compiled, eager, rtol=LOSS_RTOL, atol=0)  # inductor reorders float arithmetic
    from weights_helpers import saved_tensors

    names = {c: set(saved_tensors(runs[c].weights)) for c in runs}
    assert names[True] == names[False]  # the saved weights keep their plain names

"""End to end on tiny configurations: training, evaluation, the run directory, resume, guards, feature cache."""

import json

import pytest
import torch
from accelerate.utils import set_seed
from weights_helpers import same_tensors

from mile.engine.build import build_session
from mile.engine.checkpoint import latest_checkpoint
from mile.engine.features import FeatureCache, fingerprint
from mile.engine.inference import answer, evaluate_run, load_trained
from mile.engine.rundir import RunDir, cpu_model
from mile.engine.train import NonFiniteLoss, train_run
from mile.model.mile import MileModel


def _losses(run):
    return [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_train_writes_a_complete_run_directory(tiny_config, tmp_path):
    cfg = tiny_config("plan.text_decoder=lora", "train.eval_every=1")
    run = RunDir(tmp_path / "run")
    metrics = train_run(cfg, run)
    for name in ("config.yaml", "env.json", "params.json", "train_stats.json", "data_report.json", "log.txt"):
        assert (run / name).is_file(), name
    assert run.is_done()
    assert (run.weights / "plan.json").is_file() and (run.weights / "manifest.json").is_file()
    env = run.read_json("env.json")  # what says on which machine it ran: bf16 kernels differ by CPU kind
    assert env["cpu_threads"] >= 1 and env["cpu"] and env["cpu"] == cpu_model()
    m = json.loads((run.eval_dir("test") / "metrics.json").read_text())
    assert m == metrics["test"] and m["n"] == 24 and m["global"]["n"] == 24
    assert (run.path / "eval" / "epoch-1" / "test" / "metrics.json").is_file()
    rows = [json.loads(x) for x in (run.eval_dir("test") / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and set(rows[0]) >= {
        "id",
        "question",
        "answer",
        "prediction",
        "answer_type",
        "correct",
    }
    stats = run.read_json("train_stats.json")
    assert stats["steps"] == 2 * 3 and stats["samples"] == 48 and stats["peak_rss_mb"] > 0
    # what the task stores: the trained parameters in fp32 (plus the plan, manifest and file headers), none of
    # the frozen base weights
    stored = sum(f.stat().st_size for f in run.weights.rglob("*") if f.is_file())
    assert stats["stored_mb"] == round(stored / 2**20, 3)
    assert 0 < stored - 4 * run.read_json("params.json")["trainable"] < 64 * 1024
    assert len(list((run / "tb").iterdir())) == 1
    assert run.read_json("params.json")["trainable"] < run.read_json("params.json")["total"]
    losses = _losses(run)
    assert len(losses) == 6 and all(torch.isfinite(torch.tensor(losses)))


def test_trained_run_reloads_for_eval_and_predict(tiny_config, tmp_path, demo_data):
    run = RunDir(tmp_path / "run")
    first = train_run(tiny_config("train.epochs=1"), run)["test"]
    again = evaluate_run(run, ["test"])["test"]
    assert again == first  # same weights, same beams, same answers
    session = load_trained(run)
    # the answers of a barely trained tiny model say little: the logits must be the trained ones, not the
    # initial ones (which a reload that forgot the weights would give)
    set_seed(session.config.train.seed)
    untrained = build_session(session.config).model.eval()
    assert not torch.allclose(_logits(session.model), _logits(untrained))
    image = sorted((demo_data / "images").iterdir())[0]
    out = answer(session, str(image), ["is this a ct?", "where is the mass?"])
    assert len(out) == 2 and all(isinstance(a, str) for a in out)


def _logits(model, image_size=32):
    g = torch.Generator().manual_seed(0)
    batch = {
        "question_ids": torch.randint(1000, 30000, (2, 6), generator=g),
        "question_mask": torch.ones(2, 6, dtype=torch.long),
        "answer_ids": torch.randint(1000, 30000, (2, 4), generator=g),
        "answer_mask": torch.ones(2, 4, dtype=torch.long),
        "pixels": torch.randn(2, 3, image_size, image_size, generator=g),
    }
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_frozen_towers_get_no_grad_and_no_optimizer_state(tiny_config, tmp_path):
    run = RunDir(tmp_path / "run")
    train_run(tiny_config("plan.vision=frozen", "plan.text_encoder=frozen", "train.epochs=1"), run)
    state = torch.load(latest_checkpoint(run.checkpoints) / "optimizer.pt", weights_only=True)["optimizer"]
    n_params = sum(len(g["params"]) for g in state["param_groups"])
    params = run.read_json("params.json")
    assert params["towers"]["vision"]["trainable"] == 0 and params["towers"]["text_encoder"]["trainable"] == 0
    assert n_params == len(state["state"])  # every parameter the optimizer knows is trained
    assert sorted(p.name for p in run.weights.iterdir()) == ["manifest.json", "plan.json", "text_decoder"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_feature_cache_gives_the_same_losses_and_answers(tiny_config, tmp_path, precision, monkeypatch):
    stored = []
    put = FeatureCache._remember
    monkeypatch.setattr(
        FeatureCache, "_remember", lambda self, k, v: stored.append(v.dtype) or put(self, k, v)
    )
    # mile-small's ViT ends in a LayerNorm over an fp32 residual stream, so under autocast its states are fp32;
    # the tiny ViT's come out in bf16. Make the tiny one behave like mile-small, cached or not.
    encode = MileModel.encode_image
    monkeypatch.setattr(MileModel, "encode_image", lambda self, pixels: encode(self, pixels).float())
    runs = {}
    for mode in ("none", "memory"):
        runs[mode] = RunDir(tmp_path / mode)
        cfg = tiny_config(
            "plan.vision=frozen", f"train.feature_cache={mode}", f"train.mixed_precision={precision}"
        )
        train_run(cfg, runs[mode])
    # under bf16 the states are kept in bf16 (half the memory), which is what the cross-attention reads anyway
    assert set(stored) == {torch.bfloat16 if precision == "bf16" else torch.float32}
    assert _losses(runs["none"]) == _losses(runs["memory"])
    read = lambda r: (r.eval_dir("test") / "predictions.jsonl").read_text()  # noqa: E731
    assert read(runs["none"]) == read(runs["memory"])
    cache = runs["memory"].read_json("train_stats.json")["feature_cache"]
    assert cache["misses"] == cache["in_memory"] > 0 and cache["hits"] > 0  # each image computed once


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_feature_cache_below_trained_top_blocks_gives_the_same_losses_and_answers(
    tiny_config, tmp_path, precision
):
    runs = {}
    for mode in ("none", "memory"):
        runs[mode] = RunDir(tmp_path / mode)
        cfg = tiny_config(
            "plan.vision={method: blocks, layers: [-1]}",
            f"train.feature_cache={mode}",
            f"train.mixed_precision={precision}",
            "train.eval_every=1",
        )
        train_run(cfg, runs[mode])
    assert _losses(runs["none"]) == _losses(runs["memory"])
    read = lambda r: (r.eval_dir("test") / "predictions.jsonl").read_text()  # noqa: E731
    assert read(runs["none"]) == read(runs["memory"])
    cache = runs["memory"].read_json("train_stats.json")["feature_cache"]
    assert cache["blocks"] == 1 and cache["misses"] == cache["in_memory"] > 0 and cache["hits"] > 0
    assert runs["memory"].read_json("params.json")["towers"]["vision"]["trainable"] > 0


def test_disk_cache_key_ignores_the_trained_blocks(tiny_config):
    from mile.engine.build import build_session

    session = build_session(tiny_config("plan.vision={method: blocks, layers: [-1]}"))
    model, transform = session.model, session.transform(train=False)
    before = fingerprint(model, transform)
    with torch.no_grad():
        model.vision.blocks[1].mlp.fc1.weight.add_(1.0)  # trained: the cached trunk does not depend on it
        model.vision.norm.weight.add_(1.0)
    assert fingerprint(model, transform) == before
    with torch.no_grad():
        model.vision.blocks[0].mlp.fc1.weight.add_(1.0)  # frozen, below the trained block: it does
    assert fingerprint(model, transform) != before


def test_feature_cache_refused_when_the_vision_tower_trains(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="needs a frozen vision tower"):
        train_run(tiny_config("train.feature_cache=memory"), RunDir(tmp_path / "run"))


@pytest.mark.parametrize("stop_at", [2, 4, 6])  # mid epoch 1, mid epoch 2, end of epoch 2
def test_resume_finishes_like_an_uninterrupted_run(tiny_config, tmp_path, stop_at):
    cfg = tiny_config("train.epochs=3", "train.checkpoint_every=2", "plan.text_decoder=lora")
    whole = RunDir(tmp_path / "whole")
    train_run(cfg, whole)
    broken = RunDir(tmp_path / "broken")
    _interrupt_after(cfg, broken, steps=stop_at)
    resumed = train_run(cfg, broken, resume=True)
    assert "resumed from" in (broken / "log.txt").read_text()
    assert resumed["test"] == whole.read_json("eval/test/metrics.json")
    stats = broken.read_json("train_stats.json")
    assert stats["resumed"] and stats["samples"] == whole.read_json("train_stats.json")["samples"]
    assert same_tensors(whole.weights, broken.weights)


@pytest.mark.parametrize(
    "plan",
    [
        "plan.text_decoder=full",
        "plan.text_decoder={method: lora, r: 4}",
        "plan.text_decoder=ia3",
        "plan.text_decoder=prefix",
        "plan.text_decoder=houlsby",
        "plan.text_decoder=bitfit",
        "plan.text_decoder={method: adalora, init_r: 4, target_r: 2, total_step: 9, tinit: 1, tfinal: 1}",
    ],
)
def test_resume_mid_epoch_with_augmentation_is_exact_for_every_method_family(tiny_config, tmp_path, plan):
    cfg = tiny_config("train.epochs=3", "train.checkpoint_every=2", "data.augment=true", plan)
    whole, broken = RunDir(tmp_path / "whole"), RunDir(tmp_path / "broken")
    train_run(cfg, whole)
    _interrupt_after(cfg, broken, steps=4)  # mid epoch 2 (3 steps an epoch)
    train_run(cfg, broken)
    assert same_tensors(whole.weights, broken.weights)
    assert broken.read_json("eval/test/metrics.json") == whole.read_json("eval/test/metrics.json")


def _interrupt_after(cfg, run, steps):
    """Stop training abruptly once `steps` optimizer steps are done, as a kill would."""
    import mile.engine.train as train_mod

    real = train_mod.save_checkpoint

    def save_then_die(directory, model, optimizer, scheduler, progress):
        path = real(directory, model, optimizer, scheduler, progress)
        if progress.step >= steps:
            raise KeyboardInterrupt
        return path

    train_mod.save_checkpoint = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            train_run(cfg, run)
    finally:
        train_mod.save_checkpoint = real
    assert run.status()["state"] == "failed"


def test_nonfinite_loss_stops_with_step_and_checkpoint(tiny_config, tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    _poison_loss(monkeypatch, at_call=3)
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step 2, epoch 1, batch 2 \(sample indices"):
        train_run(tiny_config(), run)


def test_nonfinite_loss_can_be_skipped_and_counted(tiny_config, tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    _poison_loss(monkeypatch, at_call=3)
    train_run(tiny_config("train.on_nonfinite=skip"), run)
    assert run.read_json("train_stats.json")["skipped_nonfinite"] == 1
    assert "skipped a batch with non-finite loss" in (run / "log.txt").read_text()


def _poison_loss(monkeypatch, at_call):
    from mile.model.mile import MileModel

    real, calls = MileModel.answer_loss, {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        loss = real(self, *args)
        return loss * float("nan") if calls["n"] == at_call else loss

    monkeypatch.setattr(MileModel, "answer_loss", poisoned)


def test_a_plan_that_trains_nothing_is_an_error(tiny_config, tmp_path):
    cfg = tiny_config("plan.vision=frozen", "plan.text_encoder=frozen", "plan.text_decoder=frozen")
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_run(cfg, RunDir(tmp_path / "run"))


def test_partial_files_of_a_killed_write_are_removed_on_restart(tiny_config, tmp_path):
    run = RunDir(tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / ".step-00000004-b1.tmp").mkdir(parents=True)
    (tmp_path / "run" / ".metrics.json.abc123.tmp").write_text("{")
    train_run(tiny_config("train.epochs=1"), run)
    assert not list(run.path.rglob("*.tmp"))


def test_export_merges_adapters_into_a_standalone_checkpoint(tiny_config, tmp_path):
    from mile.config import load_config
    from mile.engine.export import export_run

    run = RunDir(tmp_path / "run")
    first = train_run(tiny_config("train.epochs=1", "plan.text_decoder=lora"), run)["test"]
    export_run(run, tmp_path / "export")
    cfg = load_config(None, [*_TINY_EVAL, f"model.init.path={tmp_path / 'export'}"])
    again = train_run(cfg, RunDir(tmp_path / "from-export"))["test"]
    assert again == first  # same answers from the merged standalone weights
    exported, trained = build_session(cfg).model, load_trained(run).model
    torch.testing.assert_close(_logits(exported), _logits(trained), rtol=1e-4, atol=1e-5)  # merging rounds
    base = load_trained(run)
    base.tuning.disable()  # the same model without its LoRA: an export that dropped it would match this
    assert not torch.allclose(_logits(exported), _logits(base.model), rtol=1e-4, atol=1e-5)


def test_export_refuses_methods_that_cannot_merge(tiny_config, tmp_path):
    from mile.engine.export import export_run

    run = RunDir(tmp_path / "run")
    train_run(tiny_config("train.epochs=1", "plan.text_decoder=ptv2"), run)
    with pytest.raises(ValueError, match="cannot be merged"):
        export_run(run, tmp_path / "export")


_TINY_EVAL = [
    "model.init.kind=mile",
    "model.image_size=32",
    "data.dataset=demo",
    "data.limit=24",
    "train.epochs=0",
    "eval.batch_size=16",
    "eval.num_beams=2",
    "eval.max_new_tokens=4",
]


def test_eval_of_a_run_whose_weights_do_not_match_its_config_names_the_mismatch(tiny_config, tmp_path):
    run = RunDir(tmp_path / "run")
    train_run(tiny_config("train.epochs=1", "plan.text_decoder=lora"), run)
    cfg = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(cfg.replace("r: 8", "r: 4", 1))
    with pytest.raises(
        ValueError,
        match=r"saved with plan T-T-LoRA, not this model's T-T-LoRA_r4 \(text_decoder.r: saved 8, here 4\)",
    ):
        evaluate_run(run, ["test"])


@pytest.mark.slow
def test_compiled_evaluation_gives_the_same_answers(tiny_config, tmp_path):
    plain = train_run(tiny_config("train.epochs=1"), RunDir(tmp_path / "plain"))["test"]
    compiled = train_run(tiny_config("train.epochs=1", "eval.compile=true"), RunDir(tmp_path / "compiled"))[
        "test"
    ]
    assert compiled == plain


def test_loss_falls_on_a_tiny_overfit_set_until_the_model_answers_it(tiny_config, tmp_path):
    run = RunDir(tmp_path / "run")
    cfg = tiny_config(
        "data.limit=4",
        "data.eval_splits=[train]",
        # lr 0.01 for 60 epochs memorised the 4 answers in 16 of 16 runs (seeds 42, 1, 2, 3 x fp32 / bf16 x 1 / 2
        # threads); the earlier lr 0.02 for 40 epochs in only 11 (two similar questions stayed "yes")
        "train.epochs=60",
        "train.batch_size=4",
        "train.lr=0.01",
        "train.schedule=constant",
        "train.weight_decay=0.0",
        "model.label_smoothing=0.0",
        "eval.max_new_tokens=6",
    )
    metrics = train_run(cfg, run)["train"]
    losses = _losses(run)
    assert losses[-1] < 0.05 * losses[0]
    assert metrics["global"]["acc"] == 1.0, (run.eval_dir("train") / "predictions.jsonl").read_text()


def test_adapters_trained_by_mile_train_load_through_peft_with_identical_logits(tiny_config, tmp_path):
    from peft import PeftModel

    cfg = tiny_config(
        "plan.vision=frozen", "plan.text_encoder=frozen", "plan.text_decoder={method: lora, r: 4}"
    )
    run = RunDir(tmp_path / "run")
    train_run(cfg, run)
    trained = load_trained(run).model
    set_seed(cfg.train.seed)  # the base weights the run started from: built before its plan drew LoRA's init
    plain = build_session(tiny_config("plan.vision=frozen", "plan.text_encoder=frozen")).model
    peft = PeftModel.from_pretrained(plain.text_decoder, str(run.weights / "text_decoder"))
    plain.text_decoder = peft.base_model.model  # our tower with peft's LoRA layers, read by peft
    want, got = _logits(trained), _logits(plain)
    set_seed(cfg.train.seed)
    assert not torch.equal(want, _logits(build_session(cfg).model))  # training changed them
    torch.testing.assert_close(got, want, rtol=0, atol=0)

"""Weights and checkpoints in one format: a run never uses files it did not write, never writes NaN weights, and a
write that cannot complete leaves the previous folder in place (peft's own API reading a run's adapters:
tests/engine/test_train.py)."""

import errno
import json

import pytest
import torch

import mile.engine.checkpoint as ckpt
from mile.atomic import WriteError
from mile.config import load_config
from mile.engine.build import build_session
from mile.engine.checkpoint import (
    NonFiniteWeights,
    Progress,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    save_weights,
)
from mile.model.checkpoints import CheckpointError

PLAN = ["plan.vision=frozen", "plan.text_encoder=full", "plan.text_decoder={method: lora, r: 4}"]


def _parts(seed=0, plan=PLAN):
    torch.manual_seed(seed)
    session = build_session(load_config(None, ["model.size=tiny", "model.image_size=32", *plan]))
    trainable = [p for p in session.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    sum(p.sum() for p in trainable).backward()
    optimizer.step()  # moves the weights away from their initialisation, and gives AdamW state
    return session.tuning, optimizer, scheduler


def _trainable(handle):
    return {n: p.detach().clone() for n, p in handle.model.named_parameters() if p.requires_grad}


def _saved(tmp_path, step=3):
    handle, optimizer, scheduler = _parts()
    path = save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(epoch=1, step=step))
    return path, handle, _parts(seed=1)


def _flip_a_byte(file, at=-5):
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(bytes(data))


def test_a_checkpoint_round_trips_with_a_manifest_of_every_file(tmp_path):
    path, saved, (handle, optimizer, scheduler) = _saved(tmp_path)
    assert set(json.loads((path / "manifest.json").read_text())) == {
        "optimizer.pt",
        "progress.json",
        "weights/plan.json",
        "weights/text_decoder/adapter_config.json",
        "weights/text_decoder/adapter_model.safetensors",
        "weights/text_encoder/trainable.safetensors",
    }
    assert load_checkpoint(path, handle, optimizer, scheduler).step == 3
    want, got = _trainable(saved), _trainable(handle)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


def test_run_weights_load_onto_a_fresh_model_in_the_mode_it_was_in(tmp_path):
    saved, _, _ = _parts()
    save_weights(saved, tmp_path / "weights")
    handle, _, _ = _parts(seed=1)
    handle.model.eval()
    load_weights(handle, tmp_path / "weights")
    want, got = _trainable(saved), _trainable(handle)
    assert all(torch.equal(want[k], got[k]) for k in want)
    assert not any(m.training for m in handle.model.modules())


@pytest.mark.parametrize(
    "name",
    ["weights/text_decoder/adapter_model.safetensors", "weights/plan.json", "optimizer.pt", "progress.json"],
)
def test_a_damaged_checkpoint_file_is_refused_naming_it(tmp_path, name):
    path, _, parts = _saved(tmp_path)
    _flip_a_byte(path / name)
    with pytest.raises(CheckpointError, match=f"{path / name} is damaged.*restart the run from scratch"):
        load_checkpoint(path, *parts)


def test_a_truncated_or_missing_file_is_refused(tmp_path):
    path, _, parts = _saved(tmp_path)
    file = path / "optimizer.pt"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="optimizer.pt is damaged"):
        load_checkpoint(path, *parts)
    path, _, parts = _saved(tmp_path / "again")
    (path / "weights" / "text_encoder" / "trainable.safetensors").unlink()
    with pytest.raises(CheckpointError, match="trainable.safetensors is missing"):
        load_checkpoint(path, *parts)


def test_weights_without_a_manifest_are_refused(tmp_path):
    saved, _, _ = _parts()
    save_weights(saved, tmp_path / "weights")
    (tmp_path / "weights" / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="has no manifest.json.*restart the run from scratch"):
        load_weights(saved, tmp_path / "weights")


def test_weights_of_another_plan_are_a_clear_error(tmp_path):
    saved, _, _ = _parts()
    save_weights(saved, tmp_path / "weights")
    other, _, _ = _parts(plan=["plan.vision=frozen", "plan.text_encoder=frozen", "plan.text_decoder=ia3"])
    with pytest.raises(CheckpointError, match="does not fit this run's model and plan"):
        load_weights(other, tmp_path / "weights")


def test_a_last_pointer_that_names_no_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    path, _, _ = _saved(tmp_path)
    assert latest_checkpoint(path.parent) == path
    for name in ("step-00000099-b0", "", "../elsewhere", "\udcff"):
        (path.parent / "last").write_text(name, errors="surrogateescape")
        with pytest.raises(CheckpointError, match="which is not a checkpoint.*restart the run from scratch"):
            latest_checkpoint(path.parent)
    (path.parent / "last").unlink()
    assert latest_checkpoint(path.parent) is None  # no checkpoint yet: a fresh start is right


def test_non_finite_weights_are_never_written(tmp_path):
    handle, optimizer, scheduler = _parts()
    first = save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=1))
    save_weights(handle, tmp_path / "weights")
    before = (tmp_path / "weights" / "manifest.json").read_text()
    with torch.no_grad():
        lora = next(p for n, p in handle.model.named_parameters() if p.requires_grad and "lora_B" in n)
        lora[0, 0] = float("nan")
    with pytest.raises(
        NonFiniteWeights, match=r"1 of \d+ trainable tensors hold NaN or inf \(e.g. text_decoder"
    ):
        save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=2))
    assert latest_checkpoint(tmp_path / "ck") == first and not list((tmp_path / "ck").glob(".*"))
    with pytest.raises(NonFiniteWeights):
        save_weights(handle, tmp_path / "weights")
    assert (tmp_path / "weights" / "manifest.json").read_text() == before  # the old weights stay


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    handle, optimizer, scheduler = _parts()
    first = save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=1))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(
        WriteError, match=r"cannot write .*step-00000002-b0: No space left on device.*disk is full"
    ):
        save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=2))
    assert latest_checkpoint(tmp_path / "ck") == first
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last", first.name]  # no partial folder


def test_only_the_newest_checkpoint_is_kept(tmp_path):
    handle, optimizer, scheduler = _parts()
    for step in (1, 2, 3):
        newest = save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=step))
    assert (
        sorted(p.name for p in (tmp_path / "ck").iterdir())
        == ["last", newest.name]
        == ["last", "step-00000003-b0"]
    )


class _Runs:
    """Pickles to a call that makes a folder: what a hostile optimizer.pt could do on an unsafe load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.mkdir, (self.marker,))


def test_an_optimizer_file_that_would_run_code_is_refused_even_with_a_matching_manifest(tmp_path):
    from mile.atomic import sha256_file

    path, _, parts = _saved(tmp_path)
    marker = tmp_path / "the-pickle-ran"
    torch.save({"optimizer": _Runs(marker)}, path / "optimizer.pt")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["optimizer.pt"] = sha256_file(path / "optimizer.pt")  # digests alone do not stop a planted file
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} cannot be read \(UnpicklingError: "):
        load_checkpoint(path, *parts)
    assert not marker.exists()  # torch.load(weights_only=True) never ran it


def test_last_may_only_name_a_checkpoint_folder_of_its_own_directory(tmp_path):
    path, _, _ = _saved(tmp_path)
    ck = path.parent
    for name in (".step-00000003-b0.tmp", "nested/step-1"):  # a half-written folder; one in a subfolder
        (ck / name).mkdir(parents=True)
        (ck / name / "manifest.json").write_text("{}")
        (ck / "last").write_text(name)
        with pytest.raises(CheckpointError, match=f"names {name!r}, which is not a checkpoint"):
            latest_checkpoint(ck)


def test_a_folder_with_a_bad_manifest_is_refused_saying_why(tmp_path):
    from mile.engine.checkpoint import verify_folder

    with pytest.raises(
        CheckpointError, match=r"nowhere: not a complete folder written by mile train \(it is missing\)"
    ):
        verify_folder(tmp_path / "nowhere")
    for text, why in [("{not json", "cannot be read"), ('["a"]', "is not a manifest of digests"),
                      ('{"a": 1}', "is not a manifest of digests")]:  # fmt: skip
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(CheckpointError, match=rf"manifest.json {why}.*restart the run from scratch"):
            verify_folder(tmp_path)
    (tmp_path / "manifest.json").write_text('{"../outside": "0"}')  # a digest may not reach out of its folder
    (tmp_path.parent / "outside").write_text("x")
    with pytest.raises(CheckpointError, match=r"outside is missing"):
        verify_folder(tmp_path)


def test_the_non_finite_error_names_what_was_not_written_and_three_tensors(tmp_path):
    handle, optimizer, scheduler = _parts()
    with torch.no_grad():
        bad = [(n, p) for n, p in handle.model.named_parameters() if p.requires_grad][:4]
        for _, p in bad:
            p.view(-1)[0] = float("inf")
    names = ", ".join(n for n, _ in bad[:3])
    with pytest.raises(
        NonFiniteWeights, match=rf"4 of \d+ .* \(e.g. {names}\); checkpoint step-00000002-b0 was"
    ):
        save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=2))
    with pytest.raises(NonFiniteWeights, match=rf"{tmp_path / 'weights'} was not written"):
        save_weights(handle, tmp_path / "weights")


def test_a_methods_training_state_travels_with_the_checkpoint(tmp_path, monkeypatch):
    """What a method needs besides its parameters (AdaLoRA's importance scores) is saved and handed back."""
    handle, optimizer, scheduler = _parts()
    state = {"text_decoder": {"scores": torch.arange(3.0)}}
    monkeypatch.setattr(handle, "training_state", lambda: state)
    path = save_checkpoint(tmp_path / "ck", handle, optimizer, scheduler, Progress(step=1))
    other, optimizer, scheduler = _parts(seed=1)
    got = []
    monkeypatch.setattr(other, "load_training_state", got.append)
    load_checkpoint(path, other, optimizer, scheduler)
    assert len(got) == 1 and torch.equal(got[0]["text_decoder"]["scores"], torch.arange(3.0))


def test_weights_that_cannot_be_renamed_into_place_leave_the_old_ones(tmp_path, monkeypatch):
    handle, _, _ = _parts()
    target = save_weights(handle, tmp_path / "weights")
    before = (target / "manifest.json").read_text()
    save_weights(handle, target)  # overwriting works and leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]
    real = type(target).rename

    def rename(self, to):
        if (
            self.name == ".weights.tmp"
        ):  # the new folder's move into place fails, after the old one moved aside
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, to)

    monkeypatch.setattr(type(target), "rename", rename)
    with torch.no_grad():
        next(p for p in handle.model.parameters() if p.requires_grad).add_(1.0)
    with pytest.raises(WriteError, match="No space left on device"):
        save_weights(handle, target)
    assert (target / "manifest.json").read_text() == before  # the old weights, back in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


def test_a_temp_folder_left_by_a_crash_does_not_block_the_next_write(tmp_path):
    handle, _, _ = _parts()
    for stale in (".weights.tmp", ".weights.old.tmp"):  # a process killed mid-write left these
        (tmp_path / stale / "junk").mkdir(parents=True)
    save_weights(handle, tmp_path / "weights")
    load_weights(handle, tmp_path / "weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]

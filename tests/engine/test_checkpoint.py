"""Checkpoints and trained weights: a run never uses files it did not write, never writes NaN weights, and a
write that cannot complete leaves the previous checkpoint in place."""

import errno
import json

import pytest
import torch
from torch import nn

import mile.engine.checkpoint as ckpt
from mile.atomic import WriteError
from mile.engine.checkpoint import (
    NonFiniteWeights,
    Progress,
    latest_checkpoint,
    load_checkpoint,
    load_trainable,
    save_checkpoint,
    save_trainable,
)
from mile.model.checkpoints import CheckpointError


def _parts(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return model, optimizer, scheduler


def _saved(tmp_path, step=3):
    model, optimizer, scheduler = _parts()
    path = save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, Progress(epoch=1, step=step))
    return path, _parts(seed=1)


def _flip_a_byte(file, at=-5):
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(bytes(data))


def test_a_checkpoint_round_trips_with_a_manifest_of_digests(tmp_path):
    path, (model, optimizer, scheduler) = _saved(tmp_path)
    assert set(json.loads((path / "manifest.json").read_text())) == {
        "trainable.safetensors",
        "optimizer.pt",
        "progress.json",
    }
    assert load_checkpoint(path, model, optimizer, scheduler).step == 3
    assert torch.equal(model[1].weight, _parts()[0][1].weight)


@pytest.mark.parametrize("name", ["trainable.safetensors", "optimizer.pt", "progress.json"])
def test_a_damaged_checkpoint_file_is_refused_naming_it(tmp_path, name):
    path, parts = _saved(tmp_path)
    _flip_a_byte(path / name)
    with pytest.raises(CheckpointError, match=f"{path / name} is damaged.*--restart"):
        load_checkpoint(path, *parts)


def test_a_truncated_checkpoint_file_is_refused(tmp_path):
    path, parts = _saved(tmp_path)
    file = path / "optimizer.pt"
    file.write_bytes(file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="optimizer.pt is damaged"):
        load_checkpoint(path, *parts)


def test_without_a_manifest_a_garbled_file_is_still_a_clear_error(tmp_path):
    path, parts = _saved(tmp_path)
    (path / "manifest.json").unlink()  # as written before manifests existed
    (path / "progress.json").write_text('{"epoch": 1, "step": ')
    with pytest.raises(CheckpointError, match=f"checkpoint {path} cannot be read.*--restart"):
        load_checkpoint(path, *parts)
    (path / "progress.json").write_text('{"epoch": 1, "steps": 2}')  # valid JSON, wrong fields
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path, *parts)


def test_a_last_pointer_that_names_no_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    path, _ = _saved(tmp_path)
    assert latest_checkpoint(path.parent) == path
    for name in ("step-00000099-b0", "", "../elsewhere", "\udcff"):
        (path.parent / "last").write_text(name, errors="surrogateescape")
        with pytest.raises(CheckpointError, match="which is not a checkpoint.*--restart"):
            latest_checkpoint(path.parent)
    (path.parent / "last").unlink()
    assert latest_checkpoint(path.parent) is None  # no checkpoint yet: a fresh start is right


def test_trained_weights_carry_a_digest_checked_on_load(tmp_path):
    model, _, _ = _parts()
    file = tmp_path / "weights" / "trainable.safetensors"
    save_trainable(model, file)
    assert (tmp_path / "weights" / "trainable.safetensors.sha256").is_file()
    load_trainable(_parts(seed=1)[0], file)
    _flip_a_byte(file)
    with pytest.raises(CheckpointError, match="is damaged"):
        load_trainable(model, file)


def test_weights_without_a_digest_load_but_garbage_is_a_clear_error(tmp_path):
    model, _, _ = _parts()
    file = tmp_path / "trainable.safetensors"
    save_trainable(model, file)
    (tmp_path / "trainable.safetensors.sha256").unlink()
    load_trainable(model, file)  # weights from before digests existed
    file.write_bytes(b"not safetensors at all")
    with pytest.raises(CheckpointError, match=f"{file} cannot be read as safetensors"):
        load_trainable(model, file)


def test_non_finite_weights_are_never_written(tmp_path):
    model, optimizer, scheduler = _parts()
    first = save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, Progress(step=1))
    with torch.no_grad():
        model[1].bias[0] = float("nan")
    with pytest.raises(NonFiniteWeights, match=r"1 of 3 trainable tensors hold NaN or inf \(e.g. 1.bias\)"):
        save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, Progress(step=2))
    assert latest_checkpoint(tmp_path / "ck") == first and not list((tmp_path / "ck").glob(".*"))
    with pytest.raises(NonFiniteWeights):
        save_trainable(model, tmp_path / "w" / "trainable.safetensors")
    assert not (tmp_path / "w" / "trainable.safetensors").exists()


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _parts()
    first = save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, Progress(step=1))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", full)
    with pytest.raises(
        WriteError, match=r"cannot write .*step-00000002-b0: No space left on device.*disk is full"
    ):
        save_checkpoint(tmp_path / "ck", model, optimizer, scheduler, Progress(step=2))
    assert latest_checkpoint(tmp_path / "ck") == first
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["last", first.name]  # no partial folder

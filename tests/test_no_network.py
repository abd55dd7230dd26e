"""Nothing reaches the network unless a hub id is given explicitly: with every connection refused, loading the
real checkpoints, training, evaluating and predicting all work."""

import socket

import pytest

from mile.engine.rundir import RunDir
from mile.engine.train import train_run
from mile.pretrained import build


@pytest.fixture
def offline(monkeypatch):
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return attempts


def test_local_checkpoints_and_training_need_no_network(offline, shared_dir, tiny_config_no_net, tmp_path):
    w = shared_dir / "weights"
    build("compose", vision=w / "dinov2-small", text=w / "minilm-l6-h384-uncased", image_size=56)
    train_run(tiny_config_no_net, RunDir(tmp_path / "run"))
    assert offline == []


@pytest.fixture
def tiny_config_no_net():
    from mile.config import load_config

    return load_config(
        None,
        [
            "model.size=tiny",
            "model.image_size=32",
            "data.limit=8",
            "train.epochs=1",
            "train.batch_size=4",
            "eval.num_beams=1",
            "eval.max_new_tokens=2",
            "plan.text_decoder=lora",
        ],
    )

"""Original BLIP .pth and our own format: round trips to identical outputs; bad files give clear errors."""

import pytest
import torch
from torch.testing import assert_close

from mile.model.checkpoints import (
    CheckpointError,
    load_blip_pth,
    load_hf_blip,
    load_model,
    read_weights,
    save_model,
    to_blip_pth_state,
)
from mile.pretrained import build, save_pretrained

HF_TO_BLIP = [  # transformers BLIP names -> original BLIP names (the inverse of what load_hf_blip undoes)
    ("vision_model.embeddings.class_embedding", "visual_encoder.cls_token"),
    ("vision_model.embeddings.position_embedding", "visual_encoder.pos_embed"),
    ("vision_model.embeddings.patch_embedding", "visual_encoder.patch_embed.proj"),
    ("vision_model.encoder.layers.", "visual_encoder.blocks."),
    ("vision_model.post_layernorm", "visual_encoder.norm"),
    ("self_attn.qkv", "attn.qkv"),
    ("self_attn.projection", "attn.proj"),
    ("layer_norm1", "norm1"),
    ("layer_norm2", "norm2"),
]


def _outputs(model, batch):
    pixels, question, mask, answer, answer_mask = batch
    with torch.no_grad():
        return model.eval()(question, mask, answer, answer_mask, pixels=pixels).logits


def _hf_state_as_blip_pth(hf):
    state = {}
    for key, value in hf.state_dict().items():
        for theirs, blip in HF_TO_BLIP:
            key = key.replace(theirs, blip)
        state[key] = value
    state["visual_encoder.pos_embed"] = state["visual_encoder.pos_embed"]
    state["text_encoder_m.encoder.layer.0.attention.self.query.weight"] = torch.zeros(1)  # momentum: ignored
    state["itm_head.weight"] = torch.zeros(2, 32)  # pre-training head: ignored
    return {"model": state, "optimizer": {}, "epoch": 3}


def test_blip_pth_from_transformers_weights_matches(hf_blip_dir, batch, tmp_path):
    directory, hf = hf_blip_dir
    reference, _, _ = load_hf_blip(str(directory))
    path = tmp_path / "model_base_vqa.pth"
    torch.save(_hf_state_as_blip_pth(hf), path)
    loaded, report = load_blip_pth(path, reference.config)
    assert_close(_outputs(loaded, batch), _outputs(reference, batch))
    assert "itm_head.weight" in report.ignored
    assert any(k.startswith("text_encoder_m.") for k in report.ignored)
    assert report.unexpected == [] and report.initialised == []


def test_export_to_blip_pth_round_trips(hf_blip_dir, batch, tmp_path):
    reference, _, _ = load_hf_blip(str(hf_blip_dir[0]))
    path = tmp_path / "export.pth"
    torch.save({"model": to_blip_pth_state(reference)}, path)
    loaded, report = load_blip_pth(path, reference.config)
    assert_close(_outputs(loaded, batch), _outputs(reference, batch))
    assert report.unexpected == []


def test_own_format_round_trips_with_tokenizer(hf_blip_dir, batch, tmp_path):
    reference, _, _ = load_hf_blip(str(hf_blip_dir[0]))
    built = build("blip_hf", path=str(hf_blip_dir[0]))
    save_pretrained(built.model, built.tokenizer, tmp_path / "saved")
    again = build("mile", path=tmp_path / "saved")
    assert_close(_outputs(again.model, batch), _outputs(reference, batch))
    assert (
        again.tokenizer.encode_questions(["is there a mass?"])[0].tolist()
        == built.tokenizer.encode_questions(["is there a mass?"])[0].tolist()
    )
    assert not list((tmp_path / "saved").glob("*.tmp")), "atomic writes leave no temp files behind"


def test_malicious_pickle_does_not_run(tmp_path):
    class Exploit:
        def __reduce__(self):
            target = str(tmp_path / "pwned")
            return (exec, (f"open({target!r}, 'w').write('pwned')",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        read_weights(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"\x00garbage", b"PK\x03\x04truncated"])
def test_unreadable_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        read_weights(path)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    tiny = build("random", size="tiny").model
    save_model(tiny, tmp_path / "tiny")
    cfg = tmp_path / "tiny" / "config.json"
    cfg.write_text(cfg.read_text().replace('"width": 32', '"width": 64', 1))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(tmp_path / "tiny")


def test_position_embeddings_follow_the_configured_image_size(hf_blip_dir):
    model, _, report = load_hf_blip(str(hf_blip_dir[0]), image_size=48)
    assert model.vision.pos_embed.shape == (1, 1 + 6 * 6, 32)
    assert any("bicubic" in a for a in report.adapted)


def test_offline_hub_id_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="Offline"):
        load_hf_blip("nonexistent-org/blip-vqa-none")


@pytest.mark.parametrize("has_safetensors", [True, False])
def test_hub_fetch_takes_one_copy_of_the_weights(hf_blip_dir, monkeypatch, tmp_path, has_safetensors):
    # blip-vqa-base holds model.safetensors and pytorch_model.bin (the same 1.5 GB twice): fetch only one
    import fnmatch
    import shutil

    import huggingface_hub

    source = tmp_path / "repo"
    shutil.copytree(hf_blip_dir[0], source)
    if not has_safetensors:
        state = read_weights(source / "model.safetensors")
        torch.save(state, source / "pytorch_model.bin")
        (source / "model.safetensors").unlink()
    else:
        torch.save({}, source / "pytorch_model.bin")  # a copy that must not be fetched
    fetched = tmp_path / "fetched"

    def fake_download(repo_id, allow_patterns):
        fetched.mkdir()
        for f in source.iterdir():
            if any(fnmatch.fnmatch(f.name, p) for p in allow_patterns):
                shutil.copy(f, fetched / f.name)
        return str(fetched)

    monkeypatch.setattr(
        huggingface_hub, "list_repo_files", lambda repo_id: [f.name for f in source.iterdir()]
    )
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    load_hf_blip("some-org/blip-vqa-tiny")
    names = sorted(f.name for f in fetched.iterdir())
    weights = ["model.safetensors"] if has_safetensors else ["pytorch_model.bin"]
    assert names == sorted(["config.json", *weights])


def test_unknown_init_kind_lists_choices():
    with pytest.raises(ValueError, match="valid kinds"):
        build("timm")

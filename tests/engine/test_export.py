"""`mile export --format peft | transformers` on tiny runs: each export loads where it promises (peft,
transformers) and computes the run's own logits; what a format cannot hold is refused, naming what does not
fit."""

import re

import pytest
import torch
from PIL import Image
from torch.testing import assert_close
from transformers import AutoTokenizer, BlipConfig, BlipForQuestionAnswering, BlipProcessor

from mile.config import load_config
from mile.engine.datasets import demo_root
from mile.engine.export import export_run
from mile.engine.inference import load_trained
from mile.engine.rundir import RunDir
from mile.engine.train import train_run
from mile.model.checkpoints import CheckpointError, load_model
from mile.model.config import size_config
from mile.model.generation import GenerationConfig, generate
from mile.model.mile import MileModel
from mile.pretrained import build, bundled_vocab, save_pretrained
from mile.tokenizer import MileTokenizer
from mile.tuning.errors import PlanError

TRAIN = [
    "model.image_size=32",
    "data.dataset=demo",
    "data.limit=24",
    "data.eval_splits=[]",
    "train.epochs=1",
    "train.batch_size=8",
    "train.lr=0.01",
]
# transformers BLIP at the tiny model's sizes (as tests/model/conftest.py)
TEXT = dict(vocab_size=30524, hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64)  # fmt: skip
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
              patch_size=8)  # fmt: skip
PLAN = ["plan.vision=bitfit", "plan.text_encoder=ia3", "plan.text_decoder=lora"]  # partial + two peft towers


def _train(directory, *overrides):
    run = RunDir(directory)
    train_run(load_config(None, [*TRAIN, *overrides]), run)
    return run


@pytest.fixture(scope="module")
def blip_run(tmp_path_factory):
    """A run started from a tiny transformers BLIP (every weight perturbed off its initialisation)."""
    torch.manual_seed(0)
    hf = BlipForQuestionAnswering(BlipConfig(text_config=TEXT, vision_config=VISION))
    with torch.no_grad():
        for name, p in hf.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if "embedding" in name else 0.3))
    init = tmp_path_factory.mktemp("blip_hf")
    hf.save_pretrained(init)
    root = tmp_path_factory.mktemp("runs")
    return _train(root / "run", "model.init.kind=blip_hf", f"model.init.path={init}", *PLAN)


def _inputs():
    g = torch.Generator().manual_seed(0)
    question = torch.randint(1000, 30000, (3, 7), generator=g)
    question[:, 0] = 30523  # [ENC]; unpadded: transformers 5 drops the decoder's question mask
    answer = torch.randint(1000, 30000, (3, 5), generator=g)
    answer[:, 0] = 30522  # [DEC]
    answer_mask = torch.ones_like(answer)
    answer_mask[0, 3:] = 0
    return question, torch.ones_like(question), answer, answer_mask, torch.randn(3, 3, 32, 32, generator=g)


def _logits(model):
    *text, pixels = _inputs()
    with torch.no_grad():
        return model.eval()(*text, pixels=pixels).logits


def _hf_logits(hf):
    question, mask, answer, answer_mask, pixels = _inputs()
    with torch.no_grad():
        image = hf.vision_model(pixel_values=pixels).last_hidden_state
        states = hf.text_encoder(input_ids=question, attention_mask=mask, encoder_hidden_states=image)[0]
        return hf.text_decoder(
            input_ids=answer, attention_mask=answer_mask, encoder_hidden_states=states
        ).logits


def test_peft_export_loads_as_its_readme_says_and_gives_the_run_logits(blip_run, tmp_path):
    out = export_run(blip_run, tmp_path / "peft", "peft")
    assert {p.name for p in out.iterdir()} == {"base", "text_encoder", "text_decoder", "README.md"}
    for tower in ("text_encoder", "text_decoder"):  # peft's own files; bitfit's biases live in base/
        assert {p.name for p in (out / tower).iterdir()} == {
            "adapter_config.json",
            "adapter_model.safetensors",
        }
    (snippet,) = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), flags=re.S)
    assert snippet.count("PeftModel.from_pretrained") == 2
    scope: dict = {}
    exec(snippet, scope)  # the README's own loading code
    want = _logits(load_trained(blip_run).model)
    assert_close(_logits(scope["model"]), want, rtol=1e-6, atol=1e-6)
    base, _ = load_model(out / "base")  # without the adapters it is another model: they were saved trained
    assert not torch.allclose(_logits(base), want, rtol=1e-3, atol=1e-3)


def test_transformers_export_gives_the_run_logits_loss_and_answers(blip_run, tmp_path):
    out = export_run(blip_run, tmp_path / "hf", "transformers")
    hf, info = BlipForQuestionAnswering.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf.eval()
    ours = load_trained(blip_run).model.eval()  # adapters unmerged: the export merged them
    assert_close(_hf_logits(hf), _logits(ours), rtol=1e-5, atol=1e-5)
    question, mask, answer, answer_mask, pixels = _inputs()
    labels = answer.masked_fill(answer_mask == 0, -100)  # decoder_input_ids too: labels hold -100
    with torch.no_grad():
        theirs = hf(input_ids=question, pixel_values=pixels, attention_mask=mask, decoder_input_ids=answer,
                    decoder_attention_mask=answer_mask, labels=labels).loss  # fmt: skip
        mine = ours(question, mask, answer, answer_mask, pixels=pixels).loss
    assert_close(theirs, mine, rtol=1e-5, atol=1e-5)  # label smoothing 0.1 travelled in config.json
    generated = hf.generate(input_ids=question, pixel_values=pixels, num_beams=1, max_new_tokens=4)
    assert (generated[:, 0] == 30522).all()  # transformers starts the answer with [DEC] itself
    ours_answers = generate(ours, question, mask, pixels=pixels, config=GenerationConfig(1, 4, 0))
    width = max(generated.shape[1] - 1, ours_answers.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, width - t.shape[1]))  # noqa: E731
    assert torch.equal(_cut_after_eos(pad(generated[:, 1:]), 102), pad(ours_answers))


def test_transformers_export_loads_back_into_mile_unchanged(blip_run, tmp_path):
    out = export_run(blip_run, tmp_path / "hf", "transformers")
    merged = export_run(blip_run, tmp_path / "mile", "mile")
    back = build("blip_hf", path=out).model.state_dict()
    own = load_model(merged)[0].state_dict()
    assert back.keys() == own.keys() and all(torch.equal(back[k], own[k]) for k in own)


def test_transformers_tokenizer_and_processor_are_ours(blip_run, tmp_path):
    out = export_run(blip_run, tmp_path / "hf", "transformers")
    session = load_trained(blip_run)
    questions = ["Is there a Fracture of the left femur?", "what organ is shown?"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    theirs = tokenizer(questions, padding=True, return_tensors="pt").input_ids
    assert (theirs[:, 0] == tokenizer.cls_token_id).all()  # [CLS], which a transformers user replaces:
    theirs[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")
    assert torch.equal(theirs, session.tokenizer.encode_questions(questions)[0])
    assert tokenizer.bos_token_id == session.tokenizer.bos_token_id == 30522
    processor = BlipProcessor.from_pretrained(out)
    image = sorted((demo_root() / "images").iterdir())[0]
    pixels = processor(images=Image.open(image), text=questions[0], return_tensors="pt").pixel_values[0]
    assert_close(pixels, session.transform(train=False)(image), rtol=1e-5, atol=1e-5)  # CLIP stats, 32 px


def test_peft_export_refuses_a_native_method_naming_tower_and_method(tmp_path, mile_cli, capsys):
    run = _train(tmp_path / "run", "model.size=tiny", "plan.text_decoder=ptv2")
    with pytest.raises(PlanError, match=r"text_decoder \(ptv2\) is native to mile"):
        export_run(run, tmp_path / "out", "peft")
    capsys.readouterr()  # training's progress bars
    code, _, err = mile_cli("export", run.path, tmp_path / "out", "--format", "peft")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "text_decoder (ptv2)" in err and not (tmp_path / "out").exists()


def test_transformers_export_refuses_a_model_blip_cannot_hold(tmp_path, mile_cli, capsys):
    config = size_config("tiny")
    config.vision.layerscale = 1.0  # as mile-small's DINOv2 ViT
    init = save_pretrained(MileModel(config), MileTokenizer(bundled_vocab()), tmp_path / "init")
    run = _train(
        tmp_path / "run", "model.init.kind=mile", f"model.init.path={init}", "plan.text_decoder=lora"
    )
    with pytest.raises(CheckpointError, match="LayerScale"):
        export_run(run, tmp_path / "out", "transformers")
    capsys.readouterr()
    code, _, err = mile_cli("export", run.path, tmp_path / "out", "--format", "transformers")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "LayerScale" in err and "--format mile" in err and not (tmp_path / "out").exists()


def _cut_after_eos(seqs, eos):
    after = (seqs == eos).long().cumsum(1) - (seqs == eos).long() > 0
    return seqs.masked_fill(after, 0)


def test_an_export_that_fails_midway_leaves_no_export_and_a_later_one_replaces_files(tmp_path, monkeypatch):
    run = _train(tmp_path / "run", "model.size=tiny")
    out = tmp_path / "out"

    def broken(model, tokenizer, directory):  # dies after writing the weights, before config.json and vocab
        (directory / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr("mile.engine.export.save_pretrained", broken)
    with pytest.raises(KeyboardInterrupt):
        export_run(run, out)
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "run"]  # nor a staging folder left
    monkeypatch.undo()
    export_run(run, out)
    first = (out / "model.safetensors").read_bytes()
    (out / "notes.txt").write_text("mine")  # an existing folder: its files are replaced, others kept
    (out / "model.safetensors").write_bytes(b"stale")
    export_run(run, out)
    assert (out / "model.safetensors").read_bytes() == first and (out / "notes.txt").read_text() == "mine"
    assert {"config.json", "model.safetensors", "notes.txt", "vocab.txt"} <= {p.name for p in out.iterdir()}
    load_model(out)

"""The demo's shipped checkpoint: few MB, loadable, made by the shipped config, and never trained on a demo image
(so never on a demo test question). The leak checks recompute everything from the data files themselves."""

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from mile.config import load_config
from mile.engine.demo_checkpoint import leak_free, write_pretrain_data
from mile.instruct.registry import load_dataset

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "mile" / "resources" / "checkpoints" / "demo-tiny"
DEMO = REPO / "mile" / "resources" / "demo" / "vqa_rad"


def _records(file: Path) -> list[dict]:
    return json.loads(file.read_text())


def _question(text: str) -> str:  # close enough to normalize_question for VQA-RAD's English questions
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _pairs(records: list[dict]) -> set[tuple[str, str]]:
    return {(r["image_name"], _question(r["question"])) for r in records}


DEMO_IMAGES = {r["image_name"] for split in ("train", "test") for r in _records(DEMO / f"{split}set.json")}
DEMO_TEST = _pairs(_records(DEMO / "testset.json"))


def test_the_checkpoint_never_trained_on_a_demo_image_or_test_question(shared_dir):
    vqa_rad = {str(r["qid"]): r for r in _records(shared_dir / "data" / "vqa_rad" / "trainset.json")}
    shipped = json.loads((SHIPPED / "training_data.json").read_text())["train"]
    trained = [vqa_rad[qid] for qid in shipped["kept"]]
    assert len(trained) == len(set(shipped["kept"])) == 2673
    assert not {r["image_name"] for r in trained} & DEMO_IMAGES
    assert not _pairs(trained) & DEMO_TEST
    # everything left out is about a demo image, and all of VQA-RAD train is accounted for
    assert {vqa_rad[qid]["image_name"] for qid in shipped["dropped"]} <= DEMO_IMAGES
    assert sorted(shipped["kept"] + shipped["dropped"], key=int) == sorted(vqa_rad, key=int)
    # the guard is not vacuous: VQA-RAD's train split repeats 13 demo test questions
    repeats = [r for r in vqa_rad.values() if (r["image_name"], _question(r["question"])) in DEMO_TEST]
    assert len(repeats) == 13


def test_the_guard_keeps_exactly_what_the_shipped_record_says(shared_dir):
    samples = load_dataset("vqa_rad", shared_dir / "data" / "vqa_rad", "train", verify_images=False).samples
    kept, report = leak_free(samples)
    shipped = json.loads((SHIPPED / "training_data.json").read_text())["train"]
    assert [s.id for s in kept] == shipped["kept"] and report["dropped"] == shipped["dropped"]
    assert not {(s.image.name, _question(s.question)) for s in kept} & DEMO_TEST


@pytest.fixture
def small_vqa_rad(tmp_path):
    """A VQA-RAD folder whose splits ask about two demo images and two others (600 x 400 px)."""
    root = tmp_path / "vqa_rad"
    (root / "images").mkdir(parents=True)
    demo_test = _records(DEMO / "testset.json")
    names = [demo_test[0]["image_name"], demo_test[-1]["image_name"], "other1.jpg", "other2.jpg"]
    for name in names[:2]:
        (root / "images" / name).write_bytes((DEMO / "images" / name).read_bytes())
    for name in names[2:]:
        Image.new("RGB", (600, 400), "gray").save(root / "images" / name)
    for split, offset in (("train", 0), ("test", 100)):
        records = [{**demo_test[0], "qid": offset + i, "image_name": name} for i, name in enumerate(names)]
        (root / f"{split}set.json").write_text(json.dumps(records))
    return root


def test_pretraining_data_leaves_the_demo_images_out(small_vqa_rad, tmp_path):
    """Only the other images' questions are written, their images downscaled to at most 256 px."""
    report = write_pretrain_data(small_vqa_rad, tmp_path / "out")
    for split, offset in (("train", 0), ("test", 100)):
        lines = [json.loads(x) for x in (tmp_path / "out" / f"{split}.jsonl").read_text().splitlines()]
        assert [x["image"] for x in lines] == ["images/other1.jpg", "images/other2.jpg"]
        assert report[split]["dropped"] == [str(offset), str(offset + 1)]
    assert Image.open(tmp_path / "out" / "images" / "other1.jpg").size == (256, 171)
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["other1.jpg", "other2.jpg"]


def test_build_checkpoint_writes_a_loadable_half_precision_checkpoint(small_vqa_rad, tmp_path, mile_cli):
    """The README's rebuild command, for one epoch on the small folder."""
    from safetensors.torch import load_file

    from mile.pretrained import build

    out = tmp_path / "ckpt"
    args = [
        "demo",
        "--build-checkpoint",
        out,
        "--vqa-rad",
        small_vqa_rad,
        "--output-dir",
        tmp_path,
        "--epochs",
        1,
    ]
    code, stdout, err = mile_cli(*args)
    assert code == 0, err[-2000:]
    assert "2 VQA-RAD train questions (2 about the demo's 40 images left out)" in stdout
    assert {str(t.dtype) for t in load_file(out / "model.safetensors").values()} == {"torch.float16"}
    assert build("mile", path=out).model.config.vision.image_size == 32
    made = json.loads((out / "training_data.json").read_text())
    assert made["train"]["kept"] == ["2", "3"] and made["config"]["train"]["epochs"] == 1
    assert all(oct(f.stat().st_mode)[-3:] == "644" for f in out.iterdir())
    assert (tmp_path / "demo-pretrain" / "run" / "status.json").is_file()


def test_the_shipped_checkpoint_is_small_loads_and_came_from_the_shipped_config():
    from mile.pretrained import build

    assert (SHIPPED / "model.safetensors").stat().st_size < 5e6
    model = build("mile", path=SHIPPED).model
    assert sum(p.numel() for p in model.parameters()) == 2_064_636  # the tiny size at 32 px
    made = json.loads((SHIPPED / "training_data.json").read_text())["config"]
    config = REPO / "mile" / "resources" / "configs" / "demo-pretrain.yaml"
    now = load_config(config, [f"data.root={made['data']['root']}"]).model_dump(mode="json")
    now["run"] = made["run"]  # where that run went
    assert _leaves(made) == {k: v for k, v in _leaves(now).items() if k in _leaves(made)}  # keys added later
    assert "mile demo --build-checkpoint" in (SHIPPED / "README.md").read_text()


def _leaves(node, prefix=""):
    if not isinstance(node, dict):
        return {prefix: node}
    return {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}.{key}").items()}


@pytest.mark.parametrize("name", ["README.md", "training_data.json", "config.json", "vocab.txt"])
def test_the_checkpoint_ships_its_files(name):
    assert (SHIPPED / name).is_file()

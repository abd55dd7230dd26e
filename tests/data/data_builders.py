"""Builders for tiny datasets in the real SLAKE / VQA-RAD formats, with small generated images.

A plain module (not conftest.py) so tests can import it by a name no other test directory uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

ImageWriter = Callable[..., Path]


def write_image(
    path: Path, mode: str = "RGB", size: tuple[int, int] = (12, 10), fmt: str | None = None
) -> Path:
    """Write a small image of `mode` with a gradient (so resizing and normalising have something to do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([((x * 20) % 256, (y * 25) % 256, 100) for y in range(height) for x in range(width)])
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path, format=fmt)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def slake_record(qid: int, img: str, question: str, answer: Any, **overrides: Any) -> dict[str, Any]:
    record = {
        "img_id": qid,
        "img_name": img,
        "question": question,
        "answer": answer,
        "q_lang": "en",
        "location": "Abdomen",
        "modality": "MRI",
        "answer_type": "OPEN",
        "base_type": "vqa",
        "content_type": "Modality",
        "triple": ["vhead", "_", "_"],
        "qid": qid,
    }
    record.update(overrides)
    return record


def rad_record(qid: Any, img: str, question: str, answer: Any, answer_type: str = "OPEN", **kw: Any) -> dict:
    record = {
        "qid": qid,
        "image_name": img,
        "image_organ": "HEAD",
        "answer": answer,
        "answer_type": answer_type,
        "question_type": "PRES",
        "question": question,
        "phrase_type": "freeform",
    }
    record.update(kw)
    return record


SLAKE_TRAIN = [
    slake_record(0, "xmlab0/source.jpg", "What modality is used to take this image?", "MRI"),
    slake_record(1, "xmlab0/source.jpg", "这张图片的成像方式是什么?", "核磁共振", q_lang="zh"),
    slake_record(
        2, "xmlab1/source.jpg", "Is this a CT?", "Yes", answer_type="CLOSED", content_type="Modality"
    ),
    slake_record(3, "xmlab2/source.jpg", "Which organ is abnormal?", "Liver", content_type="Abnormality"),
    slake_record(4, "xmlab2/source.jpg", "哪个器官不正常?", "肝脏", q_lang="zh", content_type="Abnormality"),
]
SLAKE_VALIDATE = [
    slake_record(100, "xmlab1/source.jpg", "Where is the liver?", "Left", content_type="Position"),
    slake_record(101, "xmlab1/source.jpg", "肝脏在哪里?", "左", q_lang="zh", content_type="Position"),
]

RAD_TRAIN = [
    rad_record(1, "synpic1.jpg", "Are regions of the brain infarcted?", "Yes", "CLOSED"),
    rad_record(2, "synpic1.jpg", "Is this an infectious process?", "Maybe", "CLOSED "),
    rad_record(3, "synpic2.png", "How many gallstones are identified?", 4, "OPEN", question_type="COUNT"),
    rad_record(4, "synpic3.jpg", "Where is the opacity?", " superficial to the patient's skin", "OPEN"),
]
RAD_TEST = [rad_record(11, "synpic2.png", "Is there evidence of an aortic aneurysm?", "yes", "CLOSED")]
RAD_PUBLIC = [
    rad_record(
        "0", "synpic1.jpg", "Are regions of the brain infarcted?", "Yes", "CLOSED", evaluation="given"
    ),
    rad_record(1, "synpic3.jpg", "How many lesions?", 2, "OPEN"),
]


def make_slake(root: Path, train: list | None = None, validate: list | None = None) -> Path:
    """A SLAKE root with train.json, validate.json (no test.json, like the shared copy) and images."""
    write_image(root / "imgs/xmlab0/source.jpg", "RGB")
    write_image(root / "imgs/xmlab1/source.jpg", "L")
    write_image(root / "imgs/xmlab2/source.jpg", "RGB", fmt="PNG")  # PNG bytes behind a .jpg name
    write_json(root / "train.json", SLAKE_TRAIN if train is None else train)
    write_json(root / "validate.json", SLAKE_VALIDATE if validate is None else validate)
    return root


def make_vqa_rad(root: Path, train: list | None = None, test: list | None = None) -> Path:
    """A VQA-RAD root with trainset.json, testset.json, VQA_RAD_Dataset_Public.json and images/."""
    write_image(root / "images/synpic1.jpg", "RGB")
    write_image(root / "images/synpic2.png", "P")
    write_image(root / "images/synpic3.jpg", "L")
    write_json(root / "trainset.json", RAD_TRAIN if train is None else train)
    write_json(root / "testset.json", RAD_TEST if test is None else test)
    write_json(root / "VQA_RAD_Dataset_Public.json", RAD_PUBLIC)
    return root

"""From samples to model batches: images decoded per item, text tokenised per batch."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mile.data.sample import Sample
from mile.tokenizer import MileTokenizer


class VQADataset(Dataset):
    """Samples with their images loaded by `transform` (path, generator -> (3, H, W) tensor). `prompts`, when
    given, replaces each sample's question text by `prompts(index, sample, epoch)` (instruction templates).
    With `transform=None` images are not decoded: the batch carries their paths for the feature cache.

    Augmentation draws from a generator seeded by (seed, epoch, index), never from the global RNG: the data
    loader fetches a batch ahead of training, so global draws would sit on either side of a checkpoint and a
    resumed run would augment differently from an unbroken one."""

    def __init__(
        self,
        samples: list[Sample],
        transform: Callable[..., Tensor] | None,
        prompts: Callable[[int, Sample, int], str] | None = None,
        seed: int = 0,
    ):
        self.samples = samples
        self.transform = transform
        self.prompts = prompts
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        question = self.prompts(index, sample, self.epoch) if self.prompts else sample.question
        item = {"index": index, "image": str(sample.image), "question": question, "answer": sample.answer}
        if self.transform is not None:
            item["pixels"] = self.transform(sample.image, self._generator(index))
        return item

    def _generator(self, index: int) -> torch.Generator:
        digest = hashlib.sha256(f"augment:{self.seed}:{self.epoch}:{index}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@dataclass
class Collate:
    """Stack images, tokenise questions ([ENC] ...) and answers ([DEC] ...) into padded id/mask tensors."""

    tokenizer: MileTokenizer

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        q_ids, q_mask = self.tokenizer.encode_questions([it["question"] for it in items])
        a_ids, a_mask = self.tokenizer.encode_answers([it["answer"] for it in items])
        batch = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "images": [it["image"] for it in items],
            "question_ids": q_ids,
            "question_mask": q_mask,
            "answer_ids": a_ids,
            "answer_mask": a_mask,
        }
        if "pixels" in items[0]:
            batch["pixels"] = torch.stack([it["pixels"] for it in items])
        return batch


MODEL_INPUTS = (
    "question_ids",
    "question_mask",
    "answer_ids",
    "answer_mask",
    "pixels",
    "image_states",
    "vision_hidden",
    "vision_depth",
)


def model_inputs(batch: dict[str, Any]) -> dict[str, Tensor]:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}

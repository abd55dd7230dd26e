"""Feature cache: a frozen vision tower's states per image, computed once and reused across steps and epochs.

Images repeat across questions (VQA-RAD: 315 images for 3,515 questions), so with a frozen ViT most of an
epoch's vision work is redundant. The cache is exact: it is used only when preprocessing is deterministic (no
augmentation) and what it keeps depends on the image alone, and features are computed by the same tower in eval
mode, under the same autocast, as the uncached forward would. With the whole tower frozen it keeps the tower's
output. When only the top blocks train (`plan.vision: {method: blocks, layers: [-2, -1]}`) it keeps the residual
stream below them, in the dtype the stream has (fp32 under bf16 autocast for mile-small, whose LayerScale
promotes it), and every step runs just the trained blocks and the final norm on it: exact as well, since the
frozen blocks below stay in eval mode (VisionTower.train). Under bf16 the states are stored in bf16, half the
memory of fp32 (mile-small at 224 px: 257 x 384 values, 197 KB per image instead of 395 KB). mile-small's tower
ends in a LayerNorm over an fp32 residual stream, whose output autocast leaves in fp32, but the only readers of
the states are the JTM's cross-attention key / value projections, which autocast casts to bf16 anyway, so they
compute with the same values either way (a LoRA-family adapter with dropout on those projections rescales its
input before that cast, so there cached and uncached inputs can differ by one bf16 rounding). Memory is bounded
(LRU over `max_items`); an optional on-disk layer keys each entry by image content and by a fingerprint of the
vision weights, the preprocessing and the stored dtype, so changing any of them misses instead of returning
stale features.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from mile.atomic import atomic_write
from mile.config import Config, ConfigError
from mile.data.images import ImageTransform
from mile.engine.build import Session
from mile.engine.precision import Precision
from mile.model.mile import MileModel, is_trainable


def default_cache_dir() -> Path:
    return Path(os.environ.get("MILE_CACHE", Path.home() / ".cache" / "mile")) / "features"


def cache_applies(model: MileModel, augment: bool) -> bool:
    return model.vision.frozen_depth() > 0 and not augment


def cached_depth(model: MileModel) -> int | None:
    """None when the cache keeps the frozen tower's output; else how many leading blocks' output it keeps."""
    return None if not is_trainable(model.vision) else model.vision.frozen_depth()


def fingerprint(model: MileModel, transform: ImageTransform, dtype: torch.dtype = torch.float32) -> str:
    """Digest of the weights the cached states depend on (all of a frozen tower; the embeddings and the
    frozen blocks below a trained top), the preprocessing and the stored dtype: what the features depend on
    besides the image."""
    depth = cached_depth(model)
    trained = {f"blocks.{i}." for i in range(depth or 0, len(model.vision.blocks))} | {"norm."}
    digest = hashlib.sha256(f"{transform.size}|{transform.normalize}|{dtype}|{depth}".encode())
    for name, tensor in sorted(model.vision.state_dict().items()):
        if depth is not None and any(name.startswith(t) for t in trained):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


class FeatureCache:
    def __init__(
        self,
        model: MileModel,
        transform: ImageTransform,
        max_items: int,
        directory: str | Path | None,
        precision: Precision,
    ):
        self.model, self.transform, self.max_items = model, transform, max_items
        self.depth = cached_depth(model)
        # a frozen tower's output is stored in the autocast dtype; a trunk's residual stream as it comes
        self.autocast, self.dtype = precision.autocast, precision.dtype if self.depth is None else None
        self.memory: OrderedDict[str, Tensor] = OrderedDict()
        self._content_keys: dict[str, str] = {}
        self.directory = (
            Path(directory) / fingerprint(model, transform, self.dtype) if directory is not None else None
        )
        self.hits = self.misses = 0

    def _key(self, path: str) -> str:
        if path not in self._content_keys:  # content, not name: an edited image is a new entry
            self._content_keys[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:32]
        return self._content_keys[path]

    def _lookup(self, key: str) -> Tensor | None:
        if key in self.memory:
            self.memory.move_to_end(key)
            return self.memory[key]
        if self.directory is not None and (self.directory / f"{key}.safetensors").is_file():
            return self._remember(key, load_file(str(self.directory / f"{key}.safetensors"))["states"])
        return None

    def _remember(self, key: str, states: Tensor) -> Tensor:
        self.memory[key] = states
        while len(self.memory) > self.max_items:
            self.memory.popitem(last=False)
        return states

    def inputs(self, paths: list[str], device: torch.device) -> dict[str, Tensor | int]:
        """The model's vision inputs for a training batch: the image states, or the trunk's states below the
        trained blocks (MileModel.forward's `vision_hidden`)."""
        if self.depth is None:
            return {"image_states": self.cached(paths, device)}
        return {"vision_hidden": self.cached(paths, device), "vision_depth": self.depth}

    @torch.no_grad()
    def states(self, paths: list[str], device: torch.device) -> Tensor:
        """(B, 1+N, D) image states for a batch of image paths (evaluation: the trained blocks, if any, run in
        eval mode on the cached trunk)."""
        if self.depth is None:
            return self.cached(paths, device)
        vision = self.model.vision
        was_training = vision.training
        vision.eval()
        with self.autocast():
            out = vision.head(self.cached(paths, device), self.depth)
        vision.train(was_training)
        return out

    @torch.no_grad()
    def cached(self, paths: list[str], device: torch.device) -> Tensor:
        """(B, ...) what the cache keeps, for a batch of image paths, computing only the missing ones."""
        keys = [self._key(p) for p in paths]
        found = {k: self._lookup(k) for k in dict.fromkeys(keys)}
        missing = [k for k, v in found.items() if v is None]
        self.hits += sum(found[k] is not None for k in keys)
        self.misses += len(missing)
        if missing:
            path_of = dict(zip(keys, paths, strict=True))
            pixels = torch.stack([self.transform(path_of[k]) for k in missing]).to(device)
            was_training = self.model.vision.training
            self.model.vision.eval()
            with self.autocast():
                if self.depth is None:
                    computed = self.model.encode_image(pixels).to(self.dtype)
                else:
                    computed = self.model.vision.trunk(pixels, self.depth)
            self.model.vision.train(was_training)
            for key, value in zip(missing, computed, strict=True):
                found[key] = self._remember(key, value.detach())
                self._persist(key, value)
        return torch.stack([found[k].to(device) for k in keys])

    def _persist(self, key: str, value: Tensor) -> None:
        if self.directory is None:
            return
        target = self.directory / f"{key}.safetensors"
        atomic_write(target, lambda tmp: save_file({"states": value.detach().cpu().contiguous()}, tmp))

    def stats(self) -> dict[str, int]:
        depth = len(self.model.vision.blocks) if self.depth is None else self.depth
        return {"hits": self.hits, "misses": self.misses, "in_memory": len(self.memory), "blocks": depth}


def feature_cache(cfg: Config, session: Session, precision: Precision) -> FeatureCache | None:
    """The feature cache when configured (or `auto`) and exact for this plan; None otherwise."""
    t = cfg.train
    if t.feature_cache == "none":
        return None
    if not cache_applies(session.model, cfg.data.augment):
        if t.feature_cache == "auto":
            return None
        raise ConfigError(
            f"train.feature_cache={t.feature_cache} needs a frozen vision tower (plan.vision: frozen) or one "
            "that trains only its top blocks (plan.vision: {method: blocks, layers: [-2, -1]}), and "
            "data.augment=false; use feature_cache=auto or none"
        )
    directory = (t.feature_cache_dir or default_cache_dir()) if t.feature_cache == "disk" else None
    transform = session.transform(train=False)
    return FeatureCache(session.model, transform, t.feature_cache_items, directory, precision)

"""One entry point for the base datasets: `load_dataset(name, root, split, **options)`.

Configs and the CLI name datasets by string; this table maps the name to its loader, its default split and the
options it accepts, so that a typo in any of them is an error listing the valid choices instead of a TypeError.
After loading, the share of bad records is checked against `max_bad_fraction` (None disables the check).

The table holds the datasets of this package only (the sources instruction data is built from); the one a run
reads, which adds instruction records, is `mile.instruct.registry` (`load_from` serves both).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mile.data.errors import DataError
from mile.data.generic import load_generic
from mile.data.records import DEFAULT_MAX_BAD_FRACTION, LoadResult
from mile.data.slake import load_slake
from mile.data.vqa_rad import load_vqa_rad

COMMON_OPTIONS = frozenset({"verify_images", "max_pixels"})  # every loader takes these


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one named dataset."""

    loader: Callable[..., LoadResult]
    default_split: str
    splits: tuple[str, ...] | None  # None: any split name (generic files)
    options: frozenset[str]


DATASETS: dict[str, DatasetSpec] = {
    "slake": DatasetSpec(load_slake, "train", ("train", "validate", "test"), COMMON_OPTIONS | {"language"}),
    "vqa_rad": DatasetSpec(load_vqa_rad, "train", ("train", "test", "public"), COMMON_OPTIONS),
    "vqa_rad_public": DatasetSpec(load_vqa_rad, "public", ("public",), COMMON_OPTIONS),
    "generic": DatasetSpec(load_generic, "train", None, COMMON_OPTIONS | {"image_root"}),
    "jsonl": DatasetSpec(load_generic, "train", None, COMMON_OPTIONS | {"image_root"}),
}


def dataset_names() -> list[str]:
    """The names `load_dataset` accepts."""
    return sorted(DATASETS)


def load_from(
    datasets: Mapping[str, DatasetSpec],
    name: str,
    root: str | os.PathLike[str],
    split: str | None = None,
    *,
    max_bad_fraction: float | None = DEFAULT_MAX_BAD_FRACTION,
    **options: object,
) -> LoadResult:
    """Load split `split` (default: the dataset's usual one) of dataset `name` of `datasets` from `root`.

    `options` go to the loader (e.g. `language="all"` for SLAKE, `image_root=` for generic files,
    `verify_images=True` for all). Raises `DataError` for unknown names, splits or options, and when more than
    `max_bad_fraction` of the records are bad.
    """
    spec = datasets.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; valid names: {sorted(datasets)}")
    split = spec.default_split if split is None else split
    if spec.splits is not None and split not in spec.splits:
        raise DataError(f"dataset {name!r} has no split {split!r}; valid splits: {list(spec.splits)}")
    unknown = sorted(set(options) - spec.options)
    if unknown:
        raise DataError(
            f"dataset {name!r} does not take option(s) {unknown}; valid options: {sorted(spec.options)}"
        )
    return spec.loader(root, split, **options).check(max_bad_fraction)


# `load_from` over the base datasets
load_dataset = functools.partial(load_from, DATASETS)

"""Every dataset a run can name: the base datasets of `mile.data.registry` plus `instruct`, instruction records.

`mile.data` knows nothing of instruction data, so the full table is composed here, the lowest package that knows
both; the engine loads through it and `mile.config` validates dataset names against it.
"""

from __future__ import annotations

import functools

from mile.data.registry import COMMON_OPTIONS, DatasetSpec, load_from
from mile.data.registry import DATASETS as BASE_DATASETS
from mile.instruct.dataset import load_instruction

DATASETS: dict[str, DatasetSpec] = {
    **BASE_DATASETS,
    # the MILE authors' release or `mile.instruct.build` output
    "instruct": DatasetSpec(
        load_instruction, "train", None, COMMON_OPTIONS | {"image_roots", "default_root", "templates"}
    ),
}


def dataset_names() -> list[str]:
    """The names `load_dataset` accepts."""
    return sorted(DATASETS)


# `mile.data.registry.load_dataset` over every dataset, instruction records included
load_dataset = functools.partial(load_from, DATASETS)

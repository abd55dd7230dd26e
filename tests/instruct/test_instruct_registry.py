"""The full dataset table: mile.data's base datasets plus `instruct`, and what config validation accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from mile.config import DATASETS as CONFIG_DATASETS
from mile.data import registry as base
from mile.data.errors import DataError
from mile.instruct.registry import dataset_names, load_dataset


def test_base_datasets_plus_instruct() -> None:
    assert dataset_names() == sorted([*base.dataset_names(), "instruct"])
    assert set(CONFIG_DATASETS) == {"demo", *dataset_names()}  # config validates against this table


def test_base_datasets_load_through_it(rad_root: Path) -> None:
    assert len(load_dataset("vqa_rad", rad_root, "test")) == len(
        base.load_dataset("vqa_rad", rad_root, "test")
    )


def test_errors_list_the_full_table(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"valid names: \['generic', 'instruct', 'jsonl'"):
        load_dataset("instrukt", tmp_path)
    with pytest.raises(DataError, match="does not take option"):
        base.load_dataset("vqa_rad", tmp_path, image_roots={})

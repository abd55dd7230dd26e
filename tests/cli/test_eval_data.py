"""`mile eval --data k=v`: each item is the override `data.k=v`, all of them one layer over the run's config."""

import pytest

from mile.cli.run import eval_command
from mile.config import ConfigError


def test_data_items_become_one_nested_data_layer(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(
        "mile.engine.inference.evaluate_run",
        lambda run, splits, data, inference: seen.update(splits=splits, data=data, inference=inference) or {},
    )
    eval_command(
        tmp_path, ["test"], ["limit=3", "options.scale=2", "options.mode=x", "prompts.eval=template"]
    )
    expected = {"limit": 3, "options": {"scale": 2, "mode": "x"}, "prompts": {"eval": "template"}}
    assert seen == {"splits": ["test"], "data": expected, "inference": None}  # was {"options.scale": 2, ...}


def test_bad_data_items_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        eval_command(tmp_path, ["test"], ["limit"])
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        eval_command(tmp_path, ["test"], ["options={a: 1, a: 2}"])

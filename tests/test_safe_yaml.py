"""Safe YAML: duplicate keys refused, alias expansion bounded, in every file a user hands us."""

import time

import pytest
import yaml

from mile.config import ConfigError, load_config
from mile.instruct.templates import TemplateError, load_templates
from mile.safe_yaml import MAX_NODES, YAMLError, expanded_size, parse_yaml
from mile.sweep.spec import SweepError, read_sweep_file

# Nine levels of ten aliases each: a few hundred bytes that stand for a billion values.
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
)


def test_a_key_given_twice_is_an_error_naming_both_lines():
    with pytest.raises(yaml.YAMLError, match=r"duplicate key 'train' \(lines 1 and 3\)"):
        parse_yaml("train: {lr: 0.1}\nmodel: {size: tiny}\ntrain: {epochs: 2}\n")
    with pytest.raises(yaml.YAMLError, match="duplicate key 'lr'"):
        parse_yaml("train:\n  lr: 0.1\n  lr: 0.2\n")


def test_merge_keys_may_still_be_overridden():
    assert parse_yaml("base: &b {lr: 1, epochs: 2}\nrun:\n  <<: *b\n  lr: 3\n")["run"] == {
        "lr": 3,
        "epochs": 2,
    }


def test_shared_aliases_are_counted_each_time_they_are_used():
    data = parse_yaml("a: &a [1, 2, 3]\nb: [*a, *a]\n")
    # root 1 + keys a, b (2) + list a (1 + 3) + list b (1 + two uses of list a, 4 each)
    assert expanded_size(data) == 1 + 2 + 4 + 1 + 8


def test_a_billion_laughs_is_refused_without_being_expanded():
    start = time.perf_counter()
    with pytest.raises(YAMLError, match=f"more than {MAX_NODES:,}"):
        parse_yaml(LAUGHS)
    assert time.perf_counter() - start < 5


def test_a_recursive_alias_is_refused():
    with pytest.raises(YAMLError, match="refers to itself"):
        parse_yaml("a: &a [1, *a]\n")


@pytest.mark.parametrize(
    "text, match",
    [
        ("train: {lr: 0.1}\ntrain: {epochs: 2}\n", "duplicate key 'train'"),
        (
            "train: {lr: 0.1}\ndata:\n  options:\n"
            + "".join(f"    {line}" for line in LAUGHS.splitlines(True)),
            "expands",
        ),
    ],
)
def test_a_config_file_with_duplicates_or_runaway_aliases_is_a_config_error(tmp_path, text, match):
    file = tmp_path / "c.yaml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(file)
    assert str(file) in str(err.value)


def test_an_override_value_with_duplicates_or_runaway_aliases_is_a_config_error():
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_config(None, ["data.options={a: 1, a: 2}"])
    flow = "{" + ", ".join(line.replace(": ", ": ", 1) for line in LAUGHS.splitlines()) + "}"
    with pytest.raises(ConfigError, match="expands"):
        load_config(None, [f"data.options={flow}"])


def test_sweep_and_template_files_are_bounded_too(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("base: c.yaml\n" + LAUGHS)
    with pytest.raises(SweepError, match="expands"):
        read_sweep_file(sweep)
    templates = tmp_path / "t.yaml"
    templates.write_text(LAUGHS)
    with pytest.raises(TemplateError, match="expands"):
        load_templates(str(templates))
    templates.write_text("name: x\nname: y\n")
    with pytest.raises(TemplateError, match="duplicate key 'name'"):
        load_templates(str(templates))

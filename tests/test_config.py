"""Configs: YAML + overrides, typed validation, every problem reported at once with the key and the choices."""

import pytest

from mile.config import Config, ConfigError, load_config, parse_yaml


def test_defaults_validate_and_round_trip_through_yaml(tmp_path):
    cfg = load_config()
    file = tmp_path / "c.yaml"
    file.write_text(cfg.to_yaml())
    assert load_config(file) == cfg


def test_overrides_are_typed_and_nested():
    cfg = load_config(
        None, ["train.lr=1e-4", "train.epochs=3", "plan.vision=frozen", "data.eval_splits=[test, train]"]
    )
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 3 and cfg.plan.vision == "frozen"
    assert cfg.data.eval_splits == ["test", "train"]


def test_yaml_1_2_booleans_and_floats():
    assert parse_yaml("a: off\nb: no\nc: yes\nd: true\ne: 1e-4") == {
        "a": "off",
        "b": "no",
        "c": "yes",
        "d": True,
        "e": 1e-4,
    }
    assert load_config(None, ["train.feature_cache=none"]).train.feature_cache == "none"


def test_all_problems_are_reported_at_once_with_keys_and_choices(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("train:\n  lr: fast\n  epohcs: 3\nmodel:\n  init: {kind: timm}\n  size: huge\n")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    text = str(err.value)
    assert "4 problem(s) in config" in text and str(file) in text
    assert "train.lr:" in text and "'fast'" in text
    assert "train.epohcs: unknown key; did you mean 'epochs'?" in text
    assert "model.init.kind:" in text and "'random'" in text and "'blip_hf'" in text
    assert "model.size:" in text and "valid sizes" in text


def test_extends_merges_a_base_file(tmp_path):
    (tmp_path / "base.yaml").write_text("train: {lr: 0.001, epochs: 7}\nmodel: {size: tiny}\n")
    (tmp_path / "top.yaml").write_text("extends: base.yaml\ntrain: {epochs: 2}\n")
    cfg = load_config(tmp_path / "top.yaml")
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.size) == (0.001, 2, "tiny")


def test_extends_cycle_and_bad_files_are_clear(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["train.lr"])


def test_yaml_tags_cannot_build_objects(tmp_path):
    file = tmp_path / "evil.yaml"
    file.write_text("train: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(file)


def test_config_schema_is_closed():
    assert Config.model_config["extra"] == "forbid"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=1e400", "train.lr"),  # YAML reads 1e400 as inf
        ("train.weight_decay=.inf", "train.weight_decay"),
        ("train.max_grad_norm=.nan", "train.max_grad_norm"),
        ("data.options={scale: -.inf}", "data.options.scale"),
    ],
)
def test_non_finite_numbers_are_refused_anywhere_with_their_key(override, key):
    with pytest.raises(ConfigError, match=f"{key}: must be a finite number"):
        load_config(None, [override])


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.batch_size=1e23", "train.batch_size"),
        ("train.seed=1e23", "train.seed"),
        ("train.seed=-1", "train.seed"),
        ("train.epochs=10000000", "train.epochs"),
        ("eval.num_beams=1000", "eval.num_beams"),
        ("model.image_size=100000", "model.image_size"),
        ("data.max_question_len=100000", "data.max_question_len"),
    ],
)
def test_absurd_counts_are_config_errors_not_tracebacks(override, key):
    with pytest.raises(ConfigError, match=f"{key}:"):
        load_config(None, [override])


def test_a_second_section_of_the_same_name_is_refused(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  lr: 0.001\n  epochs: 3\nmodel: {size: tiny}\ntrain:\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'train' \(lines 1 and 5\)"):
        load_config(file)

"""Fuzzing the config loader: whatever a YAML file or an override holds, the user gets our ConfigError."""

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mile.config import Config, ConfigError, load_config, merge_config, validate_config

SECTIONS = list(Config.model_fields)
KEYS = sorted({k for s in SECTIONS for k in getattr(Config.model_fields[s].annotation, "model_fields", {})})
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["frozen", "full", "lora", "ia3", "prefix", "T-T-LoRA", "auto", "none", "tiny", "slake"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS + ["method", "r", "x"]), inner, max_size=3)
    ),
    max_leaves=8,
)
configs = st.dictionaries(
    st.sampled_from(SECTIONS + ["bogus"]),
    st.one_of(values, st.dictionaries(st.sampled_from(KEYS + ["nope"]), values, max_size=4)),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_mapping_validates_or_raises_config_error(data):
    try:
        validate_config(data, "<fuzz>")
    except ConfigError as exc:
        assert "<fuzz>" in str(exc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_yaml_text_loads_or_raises_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        load_config(path)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=3))
def test_any_override_loads_or_raises_config_error(overrides):
    with contextlib.suppress(ConfigError):
        load_config(None, overrides)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs, configs)
def test_any_two_layers_merge_keeping_the_base_keys_the_top_lacks(base, top):
    merged = merge_config(base, top)
    assert all(repr(merged[k]) == repr(base[k]) for k in base.keys() - top.keys())  # repr: nan != nan
    with contextlib.suppress(ConfigError):
        validate_config(merged, "<fuzz>")

import pytest

from anomgan.config import build_config, parse_class_list
from anomgan.errors import ConfigError


def test_defaults_yaml_flags_and_set_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 7\n  lr_d: 0.001\nmodel:\n  z_dim: 12\n")
    cfg = build_config(path, flags={"train.epochs": 9}, overrides=["model.z_dim=20", "score.method=encoder"])
    assert cfg.train.epochs == 9  # flag beats YAML
    assert cfg.train.lr_d == 0.001  # YAML beats default
    assert cfg.model.z_dim == 20  # --set beats YAML
    assert cfg.score.method == "encoder"
    assert cfg.train.batch_size == 64  # untouched default


@pytest.mark.parametrize("text, key", [
    ("train:\n  epoch: 3\n", "train.epoch"),
    ("trian:\n  epochs: 3\n", "trian"),
])
def test_unknown_keys_are_rejected_with_their_name(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        build_config(path)


@pytest.mark.parametrize("override, key", [
    ("train.lr_g=0", "train.lr_g"),
    ("train.lr_d=-1", "train.lr_d"),
    ("train.epochs=0", "train.epochs"),
    ("train.loss=wgan", "train.loss"),
    ("train.gp_every=0", "train.gp_every"),
    ("train.gp_fraction=0", "train.gp_fraction"),
    ("train.negatives=-1", "train.negatives"),
    ("train.negative_kinds=[scar]", "train.negative_kinds"),
    ("train.negative_kinds=[]", "train.negative_kinds"),
    ("train.negative_kinds=[cutout,cutout]", "train.negative_kinds"),
    ("train.negative_rows=half", "train.negative_rows"),
    ("train.negative_area=[0.2,0.1]", "train.negative_area"),
    ("train.negative_area=[0,0.1]", "train.negative_area"),
    ("train.negative_area=[0.1]", "train.negative_area"),
    ("train.negative_area=big", "train.negative_area"),
    ("model.encoder_trunk=shared", "model.encoder_trunk"),
    ("score.method=magic", "score.method"),
    ("score.threshold_quantile=1.5", "score.threshold_quantile"),
    ("data.image_size=28", "data.image_size"),
    ("train.epochs=abc", "train.epochs"),
    ("score.weights={foo: 1}", "score.weights"),
])
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config(overrides=[override])


def test_class_lists():
    assert parse_class_list("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_class_list("cat,dog") == ["cat", "dog"]
    with pytest.raises(ConfigError):
        parse_class_list("5-2")


def test_shipped_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert {"digits.yaml", "mnist.yaml", "fashion-mnist.yaml", "tabular.yaml"} <= set(names)
    for p in root.glob("*.yaml"):
        build_config(p)


def test_bank_components_need_a_bank():
    from anomgan.config import build_config
    from anomgan.errors import ConfigError

    with pytest.raises(ConfigError, match="score.bank_size"):
        build_config(overrides=["score.bank_size=0"])
    with pytest.raises(ConfigError, match="no bank, no input_knn"):
        build_config(overrides=["score.bank_size=0", "score.weights={residual: 1.0, input_knn: 1.0}"])
    with pytest.raises(ConfigError, match="feature_maha"):
        build_config(overrides=["score.bank_size=1", "score.weights={residual: 1.0, feature_maha: 1.0}"])
    with pytest.raises(ConfigError, match="layer_maha"):
        build_config(overrides=["score.bank_size=1", "score.weights={residual: 1.0, layer_maha: 1.0}"])
    assert build_config(overrides=["score.bank_size=1", "score.weights={feature_knn: 1.0}"]).score.bank_size == 1
    cfg = build_config(overrides=["score.bank_size=0", "score.weights={residual: 1.0}"])
    assert cfg.score.bank_size == 0
    with pytest.raises(ConfigError, match="score.coreset_size"):
        build_config(overrides=["score.coreset_size=-1"])

import pytest
import torch

from anomgan.models import build_models


@pytest.mark.parametrize("size, channels", [(8, 1), (16, 3), (32, 1), (64, 3)])
def test_conv_shapes(size, channels):
    g, d, e = build_models({"kind": "image", "z_dim": 5, "width": 4, "depth": 1, "spectral_norm": True,
                            "channels": channels, "image_size": size})
    z = torch.randn(3, 5)
    x = g(z)
    assert x.shape == (3, channels, size, size) and x.abs().max() <= 1
    d.eval()  # spectral norm runs a power iteration per forward in train mode
    logit, feats = d.forward_with_features(x)
    assert logit.shape == (3,) and feats.dim() == 2 and feats.shape[0] == 3
    assert torch.equal(d.features(x), feats)
    assert e(x).shape == (3, 5)


def test_mlp_shapes():
    g, d, e = build_models({"kind": "tabular", "z_dim": 4, "width": 16, "depth": 2, "spectral_norm": False,
                            "n_features": 7})
    x = g(torch.randn(5, 4))
    assert x.shape == (5, 7) and d(x).shape == (5,) and d.features(x).shape == (5, 16) and e(x).shape == (5, 4)


def test_unsupported_size():
    with pytest.raises(ValueError, match="image_size"):
        build_models({"kind": "image", "z_dim": 5, "width": 4, "depth": 1, "spectral_norm": True, "channels": 1,
                      "image_size": 28})

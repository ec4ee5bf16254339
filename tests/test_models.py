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
    # the one-pass layer view agrees with the plain pass; each layer is averaged to 2x2: 4 values per channel
    logit2, feats2, layers = d.forward_with_layers(x)
    assert torch.allclose(logit2, logit) and torch.equal(feats2, feats)
    assert [h.shape for h in layers] == [(3, 4 * 4 * 2 ** i) for i in range(len(layers))]
    assert len(layers) == size.bit_length() - 2  # one layer at full size, then one per halving down to 4x4
    assert torch.allclose(layers[0][:, :4], torch.nn.functional.adaptive_avg_pool2d(
        d.trunk.body[1](d.trunk.body[0](x)), 2)[:, 0].flatten(1))  # channel 0's four quadrant means come first


def test_mlp_shapes():
    g, d, e = build_models({"kind": "tabular", "z_dim": 4, "width": 16, "depth": 2, "spectral_norm": False,
                            "n_features": 7})
    x = g(torch.randn(5, 4))
    assert x.shape == (5, 7) and d(x).shape == (5,) and d.features(x).shape == (5, 16) and e(x).shape == (5, 4)
    _, feats, layers = d.forward_with_layers(x)  # tables: every hidden layer whole, the last one is f(x)
    assert [h.shape for h in layers] == [(5, 16), (5, 16)] and torch.equal(layers[-1], feats)


def test_unsupported_size():
    with pytest.raises(ValueError, match="image_size"):
        build_models({"kind": "image", "z_dim": 5, "width": 4, "depth": 1, "spectral_norm": True, "channels": 1,
                      "image_size": 28})


@pytest.mark.parametrize("kind", ["image", "tabular"])
def test_critic_encoder_is_a_head_on_d_features(kind):
    args = {"kind": kind, "z_dim": 5, "width": 4, "depth": 2, "spectral_norm": True, "encoder_trunk": "critic",
            **({"channels": 1, "image_size": 16} if kind == "image" else {"n_features": 7})}
    g, d, e = build_models(args)
    d.eval()
    x = torch.randn(3, 1, 16, 16) if kind == "image" else torch.randn(3, 7)
    f = d.features(x)
    assert f.shape[1] == d.feature_dim and e(x).shape == (3, 5)
    assert torch.equal(e(x), e(x, features=f))  # given D's features, it reads them instead of running D again
    assert not torch.equal(e(x), e(x, features=f + 1))
    # D's weights are D's: E's state and parameters are its head alone, and E's loss reaches only the head
    assert all(k.startswith("head.") for k in e.state_dict())
    assert not {id(p) for p in e.parameters()} & {id(p) for p in d.parameters()}
    e(x).sum().backward()
    assert all(p.grad is not None for p in e.parameters()) and all(p.grad is None for p in d.parameters())
    own = build_models({k: v for k, v in args.items() if k != "encoder_trunk"})[2]
    assert not own.reads_critic_features and e.reads_critic_features
    assert any(not k.startswith("head.") for k in own.state_dict())  # the default keeps a trunk of its own

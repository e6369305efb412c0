"""Rotary position embeddings (``attention_rope``): the rotation itself, the option, its config round trip."""

import json

import pytest
import torch

from nirvana_mri.backbone import NirvanaConfig, NirvanaModel, preset
from nirvana_mri.backbone.layers import apply_rotary


def _qk(length=12, heads=3, dim=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, length, heads, dim, generator=g, dtype=dtype),
            torch.randn(2, length, heads, dim, generator=g, dtype=dtype))


def test_rotation_preserves_norms_and_leaves_position_zero_alone():
    q, k = _qk()
    rq, rk = apply_rotary(q, k, 10000.0)
    assert rq.shape == q.shape and rq.dtype == q.dtype
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert torch.allclose(rk.norm(dim=-1), k.norm(dim=-1), atol=1e-5)
    assert torch.allclose(rq[:, 0], q[:, 0]) and torch.allclose(rk[:, 0], k[:, 0])  # angle 0
    assert (rq[:, 1:] - q[:, 1:]).abs().max() > 1e-2


def test_half_split_form_matches_a_direct_rotation():
    """Channel i pairs with channel i + D/2 and turns by t * theta^(-2i/D) (Llama's rotate_half)."""
    q, k = _qk(length=5, heads=1, dim=4)
    rq, _ = apply_rotary(q, k, 100.0)
    t = torch.arange(5, dtype=torch.float64)[None, :, None]
    for i in range(2):
        angle = t * 100.0 ** (-2 * i / 4)
        a, b = q[..., i], q[..., i + 2]
        assert torch.allclose(rq[..., i], a * angle.cos() - b * angle.sin(), atol=1e-5)
        assert torch.allclose(rq[..., i + 2], b * angle.cos() + a * angle.sin(), atol=1e-5)


def test_scores_depend_only_on_relative_position():
    """The same q and k content placed at (t, s) and at (t + shift, s + shift) scores the same."""
    length, shift = 40, 17
    q, k = _qk(length=length)
    rq, rk = apply_rotary(q, k, 10000.0)
    scores = torch.einsum("bthd,bshd->bhts", rq, rk)
    # content of positions 0..T-1 moved to positions shift..shift+T-1
    q_moved = torch.cat([torch.zeros_like(q[:, :shift]), q], dim=1)
    k_moved = torch.cat([torch.zeros_like(k[:, :shift]), k], dim=1)
    mq, mk = apply_rotary(q_moved, k_moved, 10000.0)
    moved = torch.einsum("bthd,bshd->bhts", mq[:, shift:], mk[:, shift:])
    assert torch.allclose(scores, moved, atol=1e-4)
    # and without the rotation it still differs from a model that ignores position
    assert (scores - torch.einsum("bthd,bshd->bhts", q, k)).abs().max() > 1e-2


def test_low_precision_inputs_keep_their_dtype():
    q, k = _qk(dtype=torch.bfloat16)
    rq, rk = apply_rotary(q, k, 10000.0)
    assert rq.dtype == rk.dtype == torch.bfloat16
    exact, _ = apply_rotary(q.double(), k.double(), 10000.0)
    assert (rq.double() - exact).abs().max() < 0.05


def test_odd_head_dim_is_refused():
    with pytest.raises(ValueError, match="even"):
        apply_rotary(*_qk(dim=7), 10000.0)
    with pytest.raises(ValueError, match="attention_rope"):
        NirvanaConfig(hidden_size=21, num_heads=3, attention_rope=True)


@pytest.fixture
def embeds():
    return torch.randn(2, 50, 128, generator=torch.Generator().manual_seed(1))


def _model(config, seed=0):
    torch.manual_seed(seed)
    return NirvanaModel(config).eval()


def test_option_off_is_the_default_and_changes_nothing(embeds):
    assert NirvanaConfig().attention_rope is False
    for mix in ("nirvana", "attention_only"):
        default = _model(preset("tiny", layer_mix=mix))
        off = _model(preset("tiny", layer_mix=mix, attention_rope=False))
        with torch.no_grad():
            assert torch.equal(default(inputs_embeds=embeds).last_hidden_state,
                               off(inputs_embeds=embeds).last_hidden_state)


def test_attention_only_with_rope_is_causal_position_aware_and_trains(embeds):
    config = preset("tiny", layer_mix="attention_only", attention_rope=True)
    rope, nope = _model(config), _model(preset("tiny", layer_mix="attention_only"))
    assert rope.state_dict().keys() == nope.state_dict().keys()  # no new parameters
    nope.load_state_dict(rope.state_dict())
    with torch.no_grad():
        out = rope(inputs_embeds=embeds).last_hidden_state
        assert (out - nope(inputs_embeds=embeds).last_hidden_state).abs().max() > 1e-4
        changed = embeds.clone()
        changed[:, 30:] += 1.0
        out2 = rope(inputs_embeds=changed).last_hidden_state
    assert torch.allclose(out[:, :30], out2[:, :30], atol=1e-6)  # still causal
    rope.train()
    x = embeds.clone().requires_grad_()
    rope(inputs_embeds=x).last_hidden_state.square().mean().backward()
    assert x.grad.abs().max() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for n, p in rope.named_parameters() if not n.startswith(("trigger.", "embeddings.")))


def test_config_round_trips_and_old_files_load_without_the_field(embeds, tmp_path):
    model = _model(preset("tiny", layer_mix="attention_only", attention_rope=True, rope_theta=500.0))
    model.save_pretrained(tmp_path / "rope")
    saved = json.loads((tmp_path / "rope" / "config.json").read_text())
    assert saved["attention_rope"] is True and saved["rope_theta"] == 500.0
    loaded = NirvanaModel.from_pretrained(tmp_path / "rope")
    assert loaded.config == model.config
    assert NirvanaConfig.from_dict(model.config.to_dict()) == model.config
    with torch.no_grad():
        assert torch.equal(loaded(inputs_embeds=embeds).last_hidden_state,
                           model(inputs_embeds=embeds).last_hidden_state)

    del saved["attention_rope"]  # a config.json written before the option existed
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    assert NirvanaConfig.from_pretrained(tmp_path / "old").attention_rope is False

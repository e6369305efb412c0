"""Config round trip and the model's options: Trigger off, sliding window, ablation mixes, checkpointing."""

import json

import pytest
import torch

from nirvana_mri.backbone import NirvanaConfig, NirvanaForCausalLM, NirvanaModel, preset


def test_published_config_reads_and_round_trips(fixtures_dir, tmp_path):
    config = NirvanaConfig.from_pretrained(fixtures_dir)
    assert (config.hidden_size, config.num_heads, config.head_dim, config.intermediate_size) == (128, 2, 64, 512)
    config.to_json_file(tmp_path / "config.json")
    assert NirvanaConfig.from_pretrained(tmp_path) == config


def test_unknown_keys_warn_and_are_ignored(tmp_path):
    values = preset("tiny").to_dict() | {"some_future_key": 3}
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.warns(UserWarning, match="some_future_key"):
        NirvanaConfig.from_pretrained(tmp_path)


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError, match="hidden_size"):
        NirvanaConfig(hidden_size=100, num_heads=3, head_dim=32)
    with pytest.raises(ValueError, match="layer_mix"):
        preset("tiny", layer_mix="mamba")
    with pytest.raises(ValueError, match="model_type"):
        preset("tiny", model_type="llama")


def _activate_all_branches(model):
    """The published init zeroes the LoRA / attention-output / interpolation up-maps; wake them."""
    for name, param in model.named_parameters():
        if name.endswith("up.weight"):
            torch.nn.init.normal_(param, std=0.05)


def _run(config, embeds, seed=0):
    torch.manual_seed(seed)
    model = NirvanaModel(config).eval()
    _activate_all_branches(model)
    with torch.no_grad():
        return model(inputs_embeds=embeds).last_hidden_state


@pytest.fixture
def embeds():
    return torch.randn(2, 90, 128, generator=torch.Generator().manual_seed(1))


def test_trigger_off_changes_the_output(embeds):
    on = _run(preset("tiny"), embeds)
    off = _run(preset("tiny", use_trigger=False), embeds)
    assert (on - off).abs().max() > 1e-4


def test_sliding_window_is_a_real_option(embeds):
    full = _run(preset("tiny", window_size=48), embeds)
    wide = _run(preset("tiny", window_size=128, sliding_window=True), embeds)
    narrow = _run(preset("tiny", window_size=8, sliding_window=True), embeds)
    assert torch.allclose(full, wide, atol=1e-6)  # a window longer than T is full causal attention
    assert (full - narrow).abs().max() > 1e-4
    assert torch.allclose(full[:, :8], narrow[:, :8], atol=1e-6)  # the first 8 tokens see the same keys


@pytest.mark.parametrize("mix", ["delta_only", "attention_only"])
def test_ablation_mixes_run_and_are_causal(mix, embeds):
    out = _run(preset("tiny", layer_mix=mix), embeds)
    changed = embeds.clone()
    changed[:, 60:] += 1.0
    out2 = _run(preset("tiny", layer_mix=mix), changed)
    assert torch.allclose(out[:, :60], out2[:, :60], atol=1e-6)
    assert (out[:, 60:] - out2[:, 60:]).abs().max() > 1e-4


def test_nirvana_is_causal(embeds):
    changed = embeds.clone()
    changed[:, 70:] -= 2.0
    a, b = _run(preset("tiny"), embeds), _run(preset("tiny"), changed)
    assert torch.allclose(a[:, :70], b[:, :70], atol=1e-6)


def test_gradient_checkpointing_gives_the_same_input_gradients(embeds):
    torch.manual_seed(0)
    model = NirvanaModel(preset("tiny"))
    for p in model.parameters():
        p.requires_grad_(False)  # frozen backbone, gradients flow to the inputs (the MRI codecs' case)
    grads = []
    for checkpointing in (False, True):
        model.gradient_checkpointing = checkpointing
        x = embeds.clone().requires_grad_()
        model(inputs_embeds=x).last_hidden_state.square().mean().backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)
    assert grads[0].abs().max() > 0


def test_causal_lm_loss_and_input_validation():
    model = NirvanaForCausalLM(preset("tiny", vocab_size=64))
    ids = torch.randint(0, 64, (2, 20))
    out = model(input_ids=ids, labels=ids)
    assert out.loss.ndim == 0 and 3.0 < out.loss.item() < 5.0  # about log(64) at initialisation
    with pytest.raises(ValueError, match="exactly one"):
        model()
    with pytest.raises(ValueError, match="expected embeddings"):
        model(inputs_embeds=torch.randn(2, 5, 7))


def test_parameter_count_matches_a_built_model():
    config = preset("tiny")
    assert config.num_parameters() == sum(p.numel() for p in NirvanaForCausalLM(config).parameters())

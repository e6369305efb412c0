"""The benchmark's stand-in for the published Trigger (einsum form) computes the reference's numbers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from nirvana_mri.backbone.kernels.trigger_reference import (
    TriggerState,
    TriggerWeights,
    trigger_step_reference,
)

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "published_form.py"


def _load():
    spec = importlib.util.spec_from_file_location("published_form", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["published_form"] = module
    spec.loader.exec_module(module)
    return module


def test_einsum_trigger_matches_reference():
    published = _load()
    gen = torch.Generator().manual_seed(0)
    C, L = 8, 4
    q, k, v = (torch.randn(2, 5, C, generator=gen, dtype=torch.float64) for _ in range(3))
    weights = TriggerWeights(
        torch.randn(C, C, L, generator=gen, dtype=torch.float64) * 0.3,
        *(torch.randn(C, L, generator=gen, dtype=torch.float64) * 0.3 for _ in range(3)),
    )
    state = TriggerState(*(torch.randn(2, 5, L, generator=gen, dtype=torch.float64) for _ in range(4)))
    for learn in (True, False):
        h, new = published.trigger_step_published(q, k, v, weights, state, 0.1, 0.2, learn)
        h_ref, new_ref = trigger_step_reference(q, k, v, weights, state, 0.1, 0.2, learn)
        torch.testing.assert_close(h, h_ref)
        for a, b in zip(new, new_ref, strict=True):
            torch.testing.assert_close(a, b)


def test_patching_is_undone():
    published = _load()
    from nirvana_mri.backbone import trigger, updater

    before = (updater.gated_delta_rule, trigger.trigger_step)
    with published.published_backbone(layers=False):
        assert trigger.trigger_step is published.trigger_step_published
        assert updater.gated_delta_rule is published.fla_gated_delta_rule
    assert (updater.gated_delta_rule, trigger.trigger_step) == before


def test_model_under_the_published_trigger_matches():
    """NirvanaModel with the einsum-form Trigger patched in (delta rule left alone) computes the same."""
    published = _load()
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    torch.manual_seed(0)
    model = NirvanaModel(preset("tiny", kernel_backend="torch")).eval()
    x = torch.randn(1, 10, 128)
    with torch.no_grad():
        ref = model(inputs_embeds=x).last_hidden_state
        with published.published_backbone(delta_rule=False, layers=False):
            out = model(inputs_embeds=x).last_hidden_state
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_published_layers_need_fla():
    """Without fla the stand-in's layer kernels are a clear error, and nothing stays patched."""
    published = _load()
    if published.import_fla()[0] is not None:
        import pytest

        pytest.skip("fla is installed here: the layer kernels run on the GPU check instead")
    from nirvana_mri.backbone import layers

    before = layers.RMSNorm.forward
    try:
        with published.published_backbone():
            raise AssertionError("entered without fla")
    except RuntimeError as err:
        assert "fla is not installed" in str(err)
    assert layers.RMSNorm.forward is before

"""The backbone computes exactly what the published Nirvana computes (fixtures from the authors' code)."""

import pytest
import torch
from safetensors.torch import load_file

from nirvana_mri.backbone import NirvanaForCausalLM
from nirvana_mri.backbone.kernels import TriggerWeights, initial_state, trigger_step


@pytest.fixture(scope="module")
def published(fixtures_dir):
    model = NirvanaForCausalLM.from_pretrained(fixtures_dir, kernel_backend="torch").eval()
    return model, load_file(str(fixtures_dir / "cases.safetensors"))


@pytest.mark.parametrize("case", ["ids_chunk", "ids_recurrent", "embeds_chunk"])
def test_logits_and_hidden_states_match_exact_reference(published, case):
    model, cases = published
    with torch.no_grad():
        if case.startswith("ids"):
            out = model(input_ids=cases[f"{case}.input_ids"], output_hidden_states=True)
        else:
            out = model(inputs_embeds=cases[f"{case}.inputs_embeds"], output_hidden_states=True)
    assert (out.logits - cases[f"{case}.logits"]).abs().max() <= 1e-3
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    for i, hidden in enumerate(out.hidden_states):
        assert (hidden - cases[f"{case}.hidden_states.{i}"]).abs().max() <= 1e-3, f"hidden state {i}"
    assert torch.equal(out.last_hidden_state, out.hidden_states[-1])


def test_fixture_kernel_outputs_are_further_from_exact_than_we_are(published):
    """Sanity check of the check: the authors' bf16 kernel misses the exact reference by far more."""
    model, cases = published
    with torch.no_grad():
        ours = model(input_ids=cases["ids_chunk.input_ids"]).logits
    ours_err = (ours - cases["ids_chunk.logits"]).abs().max()
    kernel_err = (cases["ids_chunk.kernel.logits"] - cases["ids_chunk.logits"]).abs().max()
    assert ours_err * 100 < kernel_err


def test_trigger_matches_published_in_float64(fixtures_dir):
    data = load_file(str(fixtures_dir / "trigger.safetensors"))
    weights = TriggerWeights(*(data[f"param.{n}"] for n in TriggerWeights._fields))
    state = initial_state(2, 7, 16, data["step0.k"])
    for step in range(3):
        q, k, v = (data[f"step{step}.{x}"] for x in "qkv")
        h, state = trigger_step(q, k, v, weights, state, 1e-2, 1e-2, backend="torch")
        assert h.dtype == torch.float64
        assert (h - data[f"step{step}.h"]).abs().max() <= 1e-9
        for name in state._fields:
            expected = data[f"step{step}.params.{name}_tmp"]
            assert (getattr(state, name) - expected).abs().max() <= 1e-9, name

"""Checkpoints: published layout in and out, single-file and sharded, strict and loud on mismatch."""

import json
import shutil
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from nirvana_mri.backbone import CheckpointError, NirvanaConfig, NirvanaForCausalLM, NirvanaModel, preset
from nirvana_mri.backbone.checkpoint import ours_to_published, published_to_ours


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return NirvanaForCausalLM(preset("tiny", num_hidden_layers=3, vocab_size=64)).eval()


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_name_mapping_round_trips_every_parameter(tiny):
    for name in tiny.state_dict():
        assert published_to_ours(ours_to_published(name)) == name
    assert ours_to_published("model.layers.2.updater.mix_interp.up.weight") == (
        "model.layers.2.Task_Aware_Delta_Net.condition_interpolation.lora.2.weight")
    assert ours_to_published("model.trigger.weight_ln") == "model.rnn_router.weight_ln"


def test_save_then_load_reproduces_outputs(tiny, tmp_path):
    ids = torch.randint(0, 64, (2, 70))
    tiny.save_pretrained(tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "model.layers.2.Task_Aware_Delta_Net.q_lora.0.weight" in stored
    assert torch.equal(stored["lm_head.weight"], stored["model.embeddings.weight"])
    loaded = NirvanaForCausalLM.from_pretrained(tmp_path).eval()
    assert torch.equal(_logits(loaded, ids), _logits(tiny, ids))
    assert loaded.lm_head.weight is loaded.model.embeddings.weight


def test_sharded_checkpoint_loads(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, max_shard_bytes=200_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert not (tmp_path / "model.safetensors").exists()
    ids = torch.randint(0, 64, (1, 40))
    assert torch.equal(_logits(NirvanaForCausalLM.from_pretrained(tmp_path), ids), _logits(tiny, ids))


def test_bf16_save_and_base_model_load(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, dtype=torch.bfloat16)
    assert load_file(str(tmp_path / "model.safetensors"))["model.norm.weight"].dtype == torch.bfloat16
    base = NirvanaModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert base.embeddings.weight.dtype == torch.bfloat16
    assert "lm_head.weight" not in base.state_dict()


def test_missing_tensor_is_named(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["model.layers.1.Task_Aware_Delta_Net.A_log"]
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing tensors: model.layers.1.Task_Aware_Delta_Net.A_log"):
        NirvanaForCausalLM.from_pretrained(tmp_path)


def test_unexpected_and_misshaped_tensors_are_named(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["model.layers.0.Task_Aware_Delta_Net.extra.weight"] = torch.zeros(2)
    tensors["model.norm.weight"] = torch.ones(7)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        NirvanaForCausalLM.from_pretrained(tmp_path)
    assert "unexpected tensors: model.layers.0.Task_Aware_Delta_Net.extra.weight" in str(err.value)
    assert "model.norm.weight has shape (7,)" in str(err.value)


def test_config_that_does_not_match_weights(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["num_hidden_layers"] = 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="missing tensors: .*model.layers.3"):
        NirvanaForCausalLM.from_pretrained(tmp_path)


def test_truncated_file_gives_clear_error(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        NirvanaForCausalLM.from_pretrained(tmp_path)


def test_missing_folder_and_weights(tmp_path):
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        NirvanaForCausalLM.from_pretrained(tmp_path / "nope")
    NirvanaConfig(**{k: v for k, v in preset("tiny").to_dict().items()}).to_json_file(tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="neither model.safetensors nor"):
        NirvanaForCausalLM.from_pretrained(tmp_path)


def test_published_fixture_checkpoint_loads_in_both_classes(fixtures_dir, tmp_path):
    shutil.copy(fixtures_dir / "model.safetensors", tmp_path)
    shutil.copy(fixtures_dir / "config.json", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published config has no key we do not know
        model = NirvanaModel.from_pretrained(tmp_path)
    assert model.config.hidden_size == 128 and model.config.window_size == 48
    assert not model.config.sliding_window  # published behaviour: window declared, never applied

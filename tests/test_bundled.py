"""The bundled weights: the pretrained backbone models English it never saw, and the default
Nirvana-MRI model reconstructs a simulated scan better than zero-filling."""

import math

import numpy as np
import pytest
import torch

from nirvana_mri.backbone import NirvanaForCausalLM, default_backbone_path
from nirvana_mri.backbone.corpus import encode
from nirvana_mri.backbone.generate import generate_text
from nirvana_mri.data import read_scan, simulate_demo_scan
from nirvana_mri.metrics import ssim
from nirvana_mri.physics import center_crop, zero_filled
from nirvana_mri.reconstruct import default_model_path, load_model, prepare_scan, run_model

# written for this test (not in the pretraining corpus)
PROSE = (
    "The radiographer adjusted the coil around the patient's head and asked her to keep still. "
    "Outside, the rain had stopped, and the corridor smelled of coffee and floor polish. A faster "
    "scan would mean less waiting for everyone, and fewer images spoiled by a restless moment. "
    "She thought about the long list of appointments still to come that afternoon."
)


@pytest.fixture(scope="module")
def language_model():
    return NirvanaForCausalLM.from_pretrained(default_backbone_path()).eval()


def test_backbone_beats_an_ideal_unigram_model_on_unseen_prose(language_model):
    ids = torch.from_numpy(encode(PROSE).astype(np.int64))[None]
    with torch.no_grad():
        logits = language_model(input_ids=ids).logits[0, :-1].float()
    nats = torch.nn.functional.cross_entropy(logits, ids[0, 1:]).item()
    model_bpb = nats / math.log(2)
    counts = np.bincount(encode(PROSE), minlength=256).astype(float)
    p = counts[counts > 0] / counts.sum()
    unigram_bpb = float(-(p * np.log2(p)).sum())  # fitted on the very text: a generous baseline
    assert model_bpb < unigram_bpb - 1.0, (model_bpb, unigram_bpb)


def test_backbone_continues_a_prompt_with_text(language_model):
    torch.manual_seed(0)
    text = generate_text(language_model, "The heart is a muscular organ", max_new_bytes=60, temperature=0.7)
    assert len(text) >= 20
    assert sum(c.isalpha() or c.isspace() for c in text) / len(text) > 0.8


def test_default_model_beats_zero_filled(tmp_path):
    model, config = load_model(default_model_path(), "cpu")
    assert config["method"] == "nirvana_mri" and config["model_args"]["backbone"] == "bundled"
    path = simulate_demo_scan(tmp_path / "scan.h5", seed=3, slices=1, coils=8)
    scan = read_scan(path)
    prepared = prepare_scan(scan, 4, "equispaced_fraction", 0, path.name)
    recon = run_model(model, prepared, torch.device("cpu"))
    target = scan.target
    zf = center_crop(zero_filled(prepared.masked_kspace), target.shape[-2:]).numpy()
    recon = center_crop(torch.from_numpy(recon), target.shape[-2:]).numpy()
    assert ssim(target, recon) > ssim(target, zf) + 0.05


def test_bundled_weights_stay_within_30_mb():
    """Issue 5: the default model's codecs with the backbone they load, as shipped, at most 30 MB."""
    folders = [default_model_path(), default_backbone_path()]
    total = sum(f.stat().st_size for folder in folders for f in folder.iterdir() if f.is_file())
    assert total <= 30_000_000, f"{total / 1e6:.1f} MB"

"""The benchmark engine and the report writer on a tiny synthetic fastMRI folder."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from nirvana_mri import benchmark, report
from nirvana_mri.baselines.learned import UNetRecon
from nirvana_mri.recon_models import save_recon_model

from .synth import write_fastmri_volume

ROW_KEYS = {
    "method", "accel", "ssim_mean", "ssim_std", "psnr_mean", "nmse_mean", "sec_per_slice_cpu",
    "sec_per_slice_gpu", "params", "n_volumes", "n_slices", "psnr_std", "nmse_std", "trainable_params",
    "device",
}  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = root / "data"
    data.mkdir()
    write_fastmri_volume(data / "vol_a.h5", slices=3, seed=1)
    write_fastmri_volume(data / "vol_b.h5", slices=2, seed=2, crop=(48, 48))  # target cropped like fastMRI
    models = root / "models"
    torch.manual_seed(0)
    args = UNetRecon.default_args("tiny")
    save_recon_model(UNetRecon(**args), models / "unet", "unet", args, train_steps=0, batch_size=1)
    broken = models / "broken"  # config says unet, weights are of another size: loading must fail
    big = {**args, "chans": 4}
    save_recon_model(UNetRecon(**big), broken, "unet", big)
    (broken / "config.json").write_text(json.dumps({"method": "unet", "model_args": args}))
    return root, data, models


@pytest.fixture(scope="module")
def results(folders):
    _, data, models = folders
    methods = benchmark.resolve_methods(
        ["zero_filled", "sense", "unet", f"broken={models / 'broken'}"], models
    )
    calls = []
    out = benchmark.run_benchmark(
        data, methods, (4, 8), max_slices_per_volume=2, device="cpu", batch_size=2,
        command="test command", progress=lambda done, total, msg: calls.append((done, total)),
    )  # fmt: skip
    out["_progress"] = calls
    return out


def test_rows_follow_the_schema(results):
    rows = [r for r in results["rows"] if r["method"] != "broken"]
    assert {(r["method"], r["accel"]) for r in rows} == {(m, a) for m in ("zero_filled", "sense", "unet")
                                                        for a in (4, 8)}  # fmt: skip
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["n_volumes"] == 2 and row["n_slices"] == 4
        assert 0 < row["ssim_mean"] <= 1 and row["ssim_std"] >= 0
        assert row["sec_per_slice_cpu"] > 0 and row["sec_per_slice_gpu"] is None
        assert row["device"] == "cpu"
    unet = next(r for r in rows if r["method"] == "unet")
    assert unet["params"] == unet["trainable_params"] == 120_273
    assert unet["training"] == {"batch_size": 1, "train_steps": 0}
    sense = {r["accel"]: r for r in rows if r["method"] == "sense"}
    zf = {r["accel"]: r for r in rows if r["method"] == "zero_filled"}
    assert sense[4]["ssim_mean"] > zf[4]["ssim_mean"]
    assert [r["accel"] for r in results["rows"]] == sorted(r["accel"] for r in results["rows"])


def test_per_volume_values_and_metadata(results):
    per = results["per_volume"]
    assert len(per) == 3 * 2 * 2
    assert {p["volume"] for p in per} == {"vol_a.h5", "vol_b.h5"}
    for p in per:
        assert {"ssim", "psnr", "nmse", "n_slices", "sec_per_slice"} <= set(p)
    means = np.mean([p["ssim"] for p in per if p["method"] == "sense" and p["accel"] == 8])
    row = next(r for r in results["rows"] if (r["method"], r["accel"]) == ("sense", 8))
    assert means == pytest.approx(row["ssim_mean"])
    assert results["command"] == "test command"
    assert results["hardware"]["cpu"] and results["hardware"]["torch"] == torch.__version__
    assert results["data"]["volumes"]["vol_b.h5"]["target_shape"] == [48, 48]
    assert results["settings"]["center_fractions"] == {"4": 0.08, "8": 0.04}
    assert results["_progress"][-1] == (8, 8)


def test_failures_are_recorded_not_raised(results):
    errors = results["errors"]
    assert errors and all(e["method"] == "broken" for e in errors)
    assert "missing tensors" in errors[0]["error"] or "size mismatch" in errors[0]["error"]
    broken = [r for r in results["rows"] if r["method"] == "broken"]
    assert len(broken) == 2 and all(r["ssim_mean"] is None for r in broken)


def test_masks_are_fixed_and_shared(folders):
    _, data, _ = folders
    a, n_a = benchmark.make_mask((64, 64), 4, 0, "vol_a.h5")
    b, n_b = benchmark.make_mask((64, 64), 4, 0, "vol_a.h5")
    c, _ = benchmark.make_mask((64, 64), 4, 0, "vol_b.h5")
    np.testing.assert_array_equal(a, b)
    assert n_a == n_b == 5 and a.dtype == bool
    assert a.shape[-1] == 64 and not np.array_equal(a, c)


def test_report_files(results, tmp_path):
    paths = report.write_report(results, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert {"rows", "per_volume", "errors", "command", "hardware", "data", "date", "settings"} <= set(data)
    assert all(ROW_KEYS <= set(r) for r in data["rows"])
    md = paths["md"].read_text()
    assert "| method | accel | SSIM mean ± std |" in md
    assert re.search(r"\| sense \| 4x \| 0\.\d{4} ± 0\.\d{4} \|", md)
    assert "test command" in md and "The datasets differ" in md and "0.959" in md
    assert "No `nirvana_mri` model was evaluated" in md
    assert "## Errors" in md and "broken" in md
    html = paths["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert html.count("data:image/png;base64,") == 3  # box plots + examples at 4x and 8x
    assert "http" not in html.replace("http-equiv", "")  # self-contained: nothing fetched
    # the report can be rebuilt from the files alone
    again = report.load_results(paths["json"])
    assert set(again["examples"]["accels"]) == {4, 8}
    original = results["examples"]["accels"][4]["target"]
    np.testing.assert_allclose(
        again["examples"]["accels"][4]["target"], original, rtol=2e-3, atol=1e-6 * original.max()
    )
    assert report.html_report(again).count("data:image/png;base64,") == 3


def _fake_results(deltas: dict[str, float], n: int = 4) -> dict:
    """Per-volume SSIMs for nirvana_mri and ablations: ablation = nirvana - delta (+ small noise)."""
    rng = np.random.default_rng(0)
    per, rows = [], []
    for accel in (4, 8):
        base = rng.uniform(0.85, 0.9, n)
        methods = {"nirvana_mri": base, "e2e_varnet": base - 0.01, "zero_filled": base - 0.2}
        for name, delta in deltas.items():
            methods[name] = base - delta + rng.normal(0, 0.0005, n)
        for name, values in methods.items():
            for i, v in enumerate(values):
                per.append({"method": name, "accel": accel, "volume": f"v{i}", "ssim": float(v), "psnr": 30.0,
                            "nmse": 0.01, "n_slices": 2, "sec_per_slice": 0.1})  # fmt: skip
            rows.append({"method": name, "accel": accel, "ssim_mean": float(np.mean(values)),
                         "ssim_std": float(np.std(values)), "psnr_mean": 30.0, "psnr_std": 0.0,
                         "nmse_mean": 0.01, "nmse_std": 0.0, "n_volumes": n, "n_slices": 2 * n,
                         "sec_per_slice_cpu": 0.1, "sec_per_slice_gpu": None, "params": 10,
                         "trainable_params": 5, "device": "cpu", "kind": "learned"})  # fmt: skip
    return {"rows": rows, "per_volume": per, "errors": [], "command": "x", "hardware": {}, "data": {},
            "settings": {}, "examples": {}}  # fmt: skip


def test_ablation_paragraph_comes_from_the_numbers():
    res = _fake_results(
        {"nirvana_mri_no_trigger": 0.02, "nirvana_mri_random_backbone": 0.0, "codecs_only": 0.05}
    )
    text = " ".join(report.ablation_paragraph(res))
    assert re.search(r"full minus ablation: \+0\.0(19|20)\d", text)
    assert re.search(r"full minus ablation: \+0\.0(49|50)\d", text)
    assert "`nirvana_mri_no_trigger`" in text and "`codecs_only`" in text
    assert "transformer_backbone" not in text  # not evaluated: not mentioned
    assert "pretrained backbone weights do not show a measurable benefit" in text
    assert "a consistent difference" in text and "negligible" in text
    assert "the backbone (`codecs_only`) and the Trigger (`nirvana_mri_no_trigger`) consistently" in text
    for placeholder in ("TODO", "TBD", "XXX", "{", "nan"):
        assert placeholder not in text
    checks = report.target_check(res)
    assert len(checks) == 2 and all("target met" in c for c in checks)
    md = report.markdown_report(res)
    assert "## What the ablations show" in md and "## Target check" in md


def test_target_not_met_is_said_plainly():
    res = _fake_results({})
    for row in res["rows"]:
        if row["method"] == "e2e_varnet":
            row["ssim_mean"] += 0.05
    assert all("target not met" in c for c in report.target_check(res))
    assert any("trails `e2e_varnet`" in s for s in report.ablation_paragraph(res)) is False  # no ablations
    assert "No ablation models" in report.ablation_paragraph(res)[0]


def test_training_budget_check():
    def row(method, **training):
        return {"method": method, "accel": 4, "kind": "learned", "training": training, "ssim_mean": 0.9}

    same = {"rows": [row("unet", train_steps=100, batch_size=8), row("nirvana_mri", steps=200, batch_size=4)]}
    assert "= 800" in report.budget_sentence(same) and "; equal." in report.budget_sentence(same)
    differ = {
        "rows": [row("unet", train_steps=100, batch_size=8), row("e2e_varnet", train_steps=10, batch_size=8)]
    }
    assert "NOT equal" in report.budget_sentence(differ)
    single = {"rows": [row("unet", train_steps=100, batch_size=8)]}
    assert "no other model" in report.budget_sentence(single)
    unknown = {"rows": [row("unet")]}
    assert "cannot be confirmed" in report.budget_sentence(unknown)
    assert report.budget_sentence({"rows": []}) is None


def test_training_budget_counts_planned_steps_and_every_stage():
    def row(method, **training):
        return {"method": method, "accel": 4, "kind": "learned", "training": training, "ssim_mean": 0.9}

    # the best checkpoint came early (train_steps 500) but the run's budget was 1000 steps
    early_best = row("unet", train_steps=500, batch_size=4, train_config={"max_steps": 1000})
    full = row("e2e_varnet", train_steps=1000, batch_size=4, train_config={"max_steps": 1000})
    assert "; equal." in report.budget_sentence({"rows": [early_best, full]})
    # a model continued from another: both stages count
    staged = row("nirvana_mri", train_steps=900, batch_size=4, training_stages=[
        {"budget_steps": 1200, "batch_size": 4}, {"budget_steps": 1000, "batch_size": 4}])
    one_stage = row("unet", train_steps=2200, batch_size=4, train_config={"max_steps": 2200})
    sentence = report.budget_sentence({"rows": [staged, one_stage]})
    assert "1200 x 4 + 1000 x 4 = 8800" in sentence and "; equal." in sentence
    shorter = row("unet", train_steps=1000, batch_size=4, train_config={"max_steps": 1000})
    assert "NOT equal" in report.budget_sentence({"rows": [staged, shorter]})
    # a stage stopped by its time limit counts the steps it trained, not the ones it planned
    capped = row("transformer_backbone", train_steps=900, batch_size=4, training_stages=[
        {"budget_steps": 1200, "steps_trained": 1051, "batch_size": 4},
        {"budget_steps": 1149, "steps_trained": 1149, "batch_size": 4}])
    sentence = report.budget_sentence({"rows": [staged, capped]})
    assert "1051 x 4 + 1149 x 4 = 8800" in sentence and "; equal." in sentence


def test_cpu_timing_helper_survives_models_that_fail_on_cpu():
    torch.manual_seed(0)
    model = UNetRecon(**UNetRecon.default_args("tiny")).eval()
    kspace = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.complex64)
    mask = np.ones((1, 32), bool)
    seconds, n = benchmark._time_on_cpu(model, kspace, mask, 4, 2, torch.device("cpu"))
    assert seconds > 0 and n == 2

    class CudaOnly(torch.nn.Module):
        def forward(self, *args):
            raise RuntimeError("no CPU kernel")

    assert "no CPU kernel" in benchmark._time_on_cpu(CudaOnly(), kspace, mask, 4, 2, torch.device("cpu"))


def test_ablation_trained_at_another_budget_is_flagged():
    res = _fake_results({"codecs_only": 0.02, "transformer_backbone": 0.1})
    stages = {"nirvana_mri": [1200, 1000, 600], "codecs_only": [1200, 1000, 600], "transformer_backbone": [1200, 1000]}
    for row in res["rows"]:
        if row["method"] in stages:
            row["training"] = {"batch_size": 4, "training_stages": [
                {"budget_steps": s, "batch_size": 4} for s in stages[row["method"]]]}
    text = " ".join(report.ablation_paragraph(res))
    assert "`transformer_backbone` was trained on 8800 samples and `nirvana_mri` on 11200" in text
    assert "`codecs_only` was trained on" not in text  # same budget: no flag


def test_ablation_without_the_noise_input_is_flagged():
    res = _fake_results({"codecs_only": 0.02, "nirvana_mri_no_trigger": 0.01})
    for row in res["rows"]:
        if row["method"] in ("nirvana_mri", "codecs_only"):
            row["model_args"] = {"noise_conditioning": row["method"] == "nirvana_mri"}
    text = " ".join(report.ablation_paragraph(res))
    assert "`codecs_only` lacks the codecs' noise-level input and `nirvana_mri` has it" in text
    assert "`nirvana_mri_no_trigger` lacks" not in text  # not recorded: not flagged


def test_nirvana_against_varnet_with_the_noise_input():
    res = _fake_results({"e2e_varnet_noise": 0.004, "codecs_only": 0.02})
    for row in res["rows"]:
        if row["method"] in ("nirvana_mri", "e2e_varnet_noise", "codecs_only"):
            row["model_args"] = {"noise_conditioning": True}
    text = " ".join(report.ablation_paragraph(res))
    assert re.search(r"At 4x, with the noise-level input E2E-VarNet \(`e2e_varnet_noise`, like `nirvana_mri`\) "
                     r"reaches SSIM 0\.\d{4} against 0\.\d{4} for `nirvana_mri` \(Δ \+0\.00[34]\d\); "
                     r"`nirvana_mri` is higher on \d of 4 volumes \(paired ΔSSIM \+0\.00[34]\d", text)
    assert re.search(r"`nirvana_mri` minus E2E-VarNet is \+0\.0(09|10)\d without the input \(`e2e_varnet` "
                     r"0\.\d{4}\) and \+0\.00[34]\d with it; `e2e_varnet_noise` is higher on \d of 4 volumes", text)
    assert "At 8x, with the noise-level input" in text
    assert "not a like-for-like" not in text and "lacks" not in text  # both have the input: no flag
    md = report.markdown_report(res)
    assert "`e2e_varnet_noise`, like `nirvana_mri`" in md
    # the flags say what differs
    for row in res["rows"]:
        if row["method"] == "nirvana_mri":
            row["model_args"] = {"noise_conditioning": False}
    text = " ".join(report.ablation_paragraph(res))
    assert "`e2e_varnet_noise` has the noise-level input and `nirvana_mri` lacks it" in text
    assert ", like `nirvana_mri`" not in text
    for row in res["rows"]:
        if row["method"] == "e2e_varnet_noise":
            row["model_args"] = {}
    assert "saved without `noise_conditioning`: it is a plain E2E-VarNet" in " ".join(report.ablation_paragraph(res))
    # without the other ablations, and without nirvana_mri
    res = _fake_results({"e2e_varnet_noise": 0.004})
    paragraph = report.ablation_paragraph(res)
    assert "No ablation models" in paragraph[0] and any("`e2e_varnet_noise`" in s for s in paragraph[1:])
    assert report.noise_input_sentences(_fake_results({})) == []


def test_varnet_with_the_noise_input_is_listed_right_after_varnet():
    names = ["nirvana_mri", "e2e_varnet_noise", "codecs_only", "unet", "e2e_varnet", "zero_filled"]
    assert sorted(names, key=benchmark.method_sort_key) == [
        "zero_filled", "unet", "e2e_varnet", "e2e_varnet_noise", "nirvana_mri", "codecs_only"]

"""End to end on the CPU: reconstruct simulated and real files, a broken file in the batch, the demo,
test-time adaptation; fine-tuning runs, stops and resumes."""

import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from nirvana_mri.backbone import preset
from nirvana_mri.cli import main
from nirvana_mri.codecs import NirvanaMRI
from nirvana_mri.data import read_scan, simulate_dataset
from nirvana_mri.recon_models import save_recon_model

TINY_ARGS = dict(backbone="random", backbone_config=preset("tiny", num_hidden_layers=3).to_dict(), num_cascades=1,
                 patch_size=8, codec_channels=8, sens_chans=4, sens_pools=2)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    save_recon_model(NirvanaMRI(**TINY_ARGS), folder, "nirvana_mri", TINY_ARGS)
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    simulate_dataset(root, coils=4, matrix=64, slices_per_volume=2, max_subjects=3, seed=0,
                     splits=(0.34, 0.33, 0.33))
    return root


def test_reconstruct_batch_with_a_broken_file(tiny_model, dataset, tmp_path, capsys):
    files = sorted((dataset / "test").glob("*.h5")) + sorted((dataset / "val").glob("*.h5"))
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not an hdf5 file")
    before = {f: f.read_bytes() for f in files}
    code = main(["reconstruct", *map(str, files), str(broken), "--out", str(tmp_path / "out"),
                 "--model", str(tiny_model), "--png"])
    assert code == 1  # one file failed
    results = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(results["failed"]) == {"broken.h5"} and "broken.h5" in results["failed"]["broken.h5"]
    for f in files:
        assert before[f] == f.read_bytes()  # inputs untouched
        with h5py.File(tmp_path / "out" / f.name) as out:
            recon = out["reconstruction"][()]
        target = read_scan(f).target
        assert recon.shape == target.shape and recon.dtype == np.float32
        scores = results["files"][f.name]
        assert set(scores) >= {"ssim", "psnr", "nmse", "zero_filled"} and 0 < scores["ssim"] <= 1
        assert (tmp_path / "out" / f.name).with_suffix(".png").exists()
    assert "1 failed" in capsys.readouterr().out


def test_refuses_to_write_over_its_input(tiny_model, dataset, tmp_path):
    source = sorted((dataset / "test").glob("*.h5"))[0]
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    code = main(["reconstruct", str(copy), "--out", str(tmp_path), "--model", str(tiny_model)])
    assert code == 1
    assert copy.read_bytes() == source.read_bytes()


def test_missing_input_and_no_input_are_one_line_errors(tiny_model, tmp_path, capsys):
    assert main(["reconstruct", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o")]) == 1
    assert main(["reconstruct", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "input not found" in err and "no input files" in err and "Traceback" not in err


def test_cuda_graphs_need_a_gpu_and_a_backbone(tiny_model, dataset, tmp_path, capsys):
    """--cuda-graphs on the CPU is a one-line error before any model is loaded; enabling them on a model
    without a backbone is refused; on a Nirvana-MRI model they leave CPU results unchanged (eager there)."""
    from nirvana_mri.reconstruct import enable_cuda_graphs, load_model

    source = sorted((dataset / "test").glob("*.h5"))[0]
    code = main(["reconstruct", str(source), "--out", str(tmp_path / "o"), "--model", str(tiny_model),
                 "--device", "cpu", "--cuda-graphs"])
    err = capsys.readouterr().err
    assert code == 1 and "--cuda-graphs needs a CUDA device" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
    model, _ = load_model(tiny_model)
    kspace = torch.randn(1, 4, 64, 64, 2)
    mask = torch.zeros(1, 1, 1, 64, 1)
    mask[..., ::2, :] = 1
    with torch.no_grad():
        want = model(kspace * mask, mask, 8)
        enable_cuda_graphs(model)
        assert model.backbone.graphs is not None
        torch.testing.assert_close(model(kspace * mask, mask, 8), want, rtol=0, atol=0)
    codecs_only = NirvanaMRI(**{**TINY_ARGS, "backbone": None})
    with pytest.raises(ValueError, match="needs a Nirvana-MRI model with a backbone"):
        enable_cuda_graphs(codecs_only)


def test_cuda_graphs_default_on_gpus_only(tiny_model):
    """Neither --cuda-graphs nor --no-cuda-graphs: graphs for Nirvana-MRI models on a CUDA device, not on the CPU
    nor for codec-only models; the flags decide when given (the CPU refusal of --cuda-graphs is the run's)."""
    from nirvana_mri.cli import build_parser
    from nirvana_mri.reconstruct import load_model, wants_cuda_graphs

    model, _ = load_model(tiny_model)
    codecs_only = NirvanaMRI(**{**TINY_ARGS, "backbone": None})
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert wants_cuda_graphs(None, cuda, model) and not wants_cuda_graphs(None, cpu, model)
    assert not wants_cuda_graphs(None, cuda, codecs_only)
    assert not wants_cuda_graphs(False, cuda, model) and wants_cuda_graphs(True, cpu, model)
    parse = build_parser().parse_args
    assert [parse(["reconstruct", "x.h5", "--out", "o", *flag]).cuda_graphs
            for flag in ([], ["--cuda-graphs"], ["--no-cuda-graphs"])] == [None, True, False]


def test_demo_writes_a_figure(tiny_model, tmp_path):
    assert main(["reconstruct", "--demo", "--out", str(tmp_path), "--model", str(tiny_model)]) == 0
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "metrics.json").read_text())["files"]


def test_test_time_adaptation_runs_and_changes_the_result(tiny_model, dataset, tmp_path):
    source = str(sorted((dataset / "test").glob("*.h5"))[0])
    main(["reconstruct", source, "--out", str(tmp_path / "a"), "--model", str(tiny_model)])
    main(["reconstruct", source, "--out", str(tmp_path / "b"), "--model", str(tiny_model), "--adapt-steps", "3"])
    name = source.rsplit("/", 1)[1]
    with h5py.File(tmp_path / "a" / name) as a, h5py.File(tmp_path / "b" / name) as b:
        assert not np.array_equal(a["reconstruction"][()], b["reconstruction"][()])


def test_warns_when_a_scan_is_much_cleaner_than_the_training_data(tiny_model, tmp_path, capsys):
    """A model whose config declares training_snr warns on a scan far cleaner than that, not on a similar one."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "training_snr": [30, 40]}))
    files = []
    for snr in (30.0, 1000.0):  # 256 x 256: at tiny matrices the k-space corners still hold signal
        folder = tmp_path / f"snr{snr:g}"
        simulate_dataset(folder, coils=4, matrix=256, slices_per_volume=1, max_subjects=1, seed=0, snr=snr,
                         splits=(0, 0, 1))
        files.append(sorted((folder / "test").glob("*.h5"))[0])
    outputs = []
    for i, path in enumerate(files):  # the same volume name at both SNRs: one output folder each
        out = tmp_path / f"out{i}"
        assert main(["reconstruct", str(path), "--out", str(out), "--model", str(model)]) == 0
        outputs.append(json.loads((out / "metrics.json").read_text())["files"][path.name])
    noisy_scan, clean_scan = outputs
    assert "warning" not in noisy_scan and noisy_scan["estimated_snr"] < 60
    assert "far above the model's training data" in clean_scan["warning"] and clean_scan["estimated_snr"] > 300
    assert capsys.readouterr().err.count("estimated SNR") == 1


def test_already_undersampled_input_with_a_target(tiny_model, dataset, tmp_path):
    """A file whose k-space is already undersampled (zeros) is used as measured; the SNR estimate is
    undefined there and metrics.json stays valid JSON (null, never NaN)."""
    source = sorted((dataset / "test").glob("*.h5"))[0]
    measured = tmp_path / "measured" / source.name
    measured.parent.mkdir()
    shutil.copy(source, measured)
    with h5py.File(measured, "r+") as f:
        kspace = f["kspace"][()]
        width = kspace.shape[-1]
        keep = np.zeros(width, bool)
        keep[::3] = True
        keep[width // 2 - 4 : width // 2 + 4] = True  # the calibration lines
        f["kspace"][...] = kspace * keep
    assert main(["reconstruct", str(measured), "--out", str(tmp_path / "out"), "--model", str(tiny_model)]) == 0
    text = (tmp_path / "out" / "metrics.json").read_text()
    assert "NaN" not in text
    scores = json.loads(text)["files"][source.name]
    assert scores["retrospective"] is False and scores["estimated_snr"] is None and "warning" not in scores

    with h5py.File(measured, "r+") as f:  # no calibration lines: a clear refusal, not a NaN image
        kspace = f["kspace"][()]
        kspace[..., width // 2 - 4 : width // 2 + 4] = 0
        f["kspace"][...] = kspace
    assert main(["reconstruct", str(measured), "--out", str(tmp_path / "out2"), "--model", str(tiny_model)]) == 1
    failed = json.loads((tmp_path / "out2" / "metrics.json").read_text())["failed"]
    assert "no sampled centre" in failed[source.name] and not (tmp_path / "out2" / source.name).exists()


def _prepared_test_scan(dataset):
    from nirvana_mri.reconstruct import prepare_scan

    path = sorted((dataset / "test").glob("*.h5"))[0]
    return prepare_scan(read_scan(path), 4, "equispaced_fraction", 0, path.name)


def test_adaptation_keeps_the_unadapted_model_when_adapting_hurts(dataset):
    """Self-validated early stopping: steps that wreck the model (a huge learning rate) are not kept."""
    from nirvana_mri.reconstruct import adapt_to_scan

    torch.manual_seed(0)
    model = NirvanaMRI(**TINY_ARGS)
    adapted = adapt_to_scan(model, _prepared_test_scan(dataset), torch.device("cpu"), steps=4, lr=10.0)
    for before, after in zip(model.state_dict().values(), adapted.state_dict().values(), strict=True):
        assert torch.equal(before, after)


def test_adaptation_improves_the_held_out_kspace_of_an_untrained_model(dataset):
    """On an untrained model, a few steps lower the error on measured samples it never saw while adapting."""
    from nirvana_mri.reconstruct import _hidden_kspace_loss, _random_subset, adapt_to_scan, slice_masks

    torch.manual_seed(0)
    model, prepared = NirvanaMRI(**TINY_ARGS), _prepared_test_scan(dataset)
    adapted = adapt_to_scan(model, prepared, torch.device("cpu"), steps=6, lr=1e-3, seed=0)
    mask = slice_masks(prepared, 0, 1)
    probe = _random_subset(mask, 0.1, torch.Generator().manual_seed(123))  # unrelated to the adaptation's splits
    with torch.no_grad():
        errors = [_hidden_kspace_loss(m.eval(), prepared.masked_kspace[:1], mask.bool() & ~probe, probe).item()
                  for m in (model, adapted)]
    assert errors[1] < errors[0]


@pytest.mark.parametrize("name,accel", [("ugmpi_phantom_4ch_256.h5", 4), ("brain_8ch_poisson_r8_undersampled.h5", 4)])
def test_real_kspace(real_kspace_dir, tiny_model, tmp_path, name, accel):
    source = real_kspace_dir / name
    code = main(["reconstruct", str(source), "--out", str(tmp_path), "--model", str(tiny_model),
                 "--accel", str(accel)])
    assert code == 0
    scan = read_scan(source)
    with h5py.File(tmp_path / name) as out:
        recon = out["reconstruction"][()]
    assert recon.shape == (scan.num_slices, *scan.recon_size) and np.isfinite(recon).all()


def test_finetune_two_steps_then_resume(dataset, tmp_path):
    out = tmp_path / "run"
    args = ["finetune", "--train", str(dataset / "train"), "--val", str(dataset / "val"), "--out", str(out),
            "--method", "nirvana_mri", "--model-args", json.dumps(TINY_ARGS), "--batch-size", "2",
            "--val-every", "2", "--workers", "0", "--warmup", "1"]
    assert main(args + ["--steps", "2"]) == 0
    first = json.loads((out / "summary.json").read_text())
    assert first["steps"] == 2 and 0 < first["best_val_ssim"] <= 1 and first["cuda_graphs"] is False  # CPU
    assert (out / "best" / "model.safetensors").exists() and (out / "last" / "trainer_state.pt").exists()
    assert main(args + ["--steps", "3"]) == 0  # resumes at step 2, trains one more
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert [r["step"] for r in log if "val" in r] == [2, 3]


def test_finetune_from_a_saved_model_records_both_training_stages(dataset, tmp_path):
    """A model continued from another keeps the whole training history (the benchmark's budget check)."""
    common = ["--train", str(dataset / "train"), "--val", str(dataset / "val"), "--batch-size", "2",
              "--val-every", "1", "--workers", "0", "--warmup", "1"]
    first, second = tmp_path / "stage1", tmp_path / "stage2"
    assert main(["finetune", *common, "--out", str(first), "--method", "nirvana_mri",
                 "--model-args", json.dumps(TINY_ARGS), "--steps", "2"]) == 0
    assert main(["finetune", *common, "--out", str(second), "--init", str(first / "best"), "--steps", "1"]) == 0
    log = [json.loads(line) for line in (second / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val" in r] == [0, 1]  # the starting model is validated (a best candidate)
    start_ssim = log[0]["val"]["ssim"]
    best = json.loads((second / "best" / "config.json").read_text())
    assert best["val"]["ssim"] >= start_ssim and best["training_stages"][1]["checkpoint_step"] in (0, 1)
    stages = best["training_stages"]
    assert [(s["budget_steps"], s["batch_size"]) for s in stages] == [(2, 2), (1, 2)]
    assert [s["steps_trained"] for s in stages] == [2, 1]  # what each stage really ran
    assert stages[1]["train"] == [str(dataset / "train")]
    snr = json.loads((dataset / "manifest.json").read_text())["parameters"]["snr"]
    expected = [min(snr), max(snr)] if isinstance(snr, list) else [snr, snr]
    assert stages[0]["snr"] == stages[1]["snr"] == expected  # read from the simulated data's manifest
    assert json.loads((second / "best" / "config.json").read_text())["training_snr"] == expected


def test_training_snr_is_unknown_without_a_simulation_manifest(tmp_path):
    from nirvana_mri.train import simulated_snr_range, training_snr

    (tmp_path / "sim" / "train").mkdir(parents=True)
    (tmp_path / "sim" / "manifest.json").write_text(json.dumps({"parameters": {"snr": [30.0, 1000.0]}}))
    (tmp_path / "real").mkdir()
    assert simulated_snr_range([str(tmp_path / "sim" / "train")]) == [30.0, 1000.0]
    assert simulated_snr_range([str(tmp_path / "sim" / "train"), str(tmp_path / "real")]) is None
    assert training_snr([{"snr": [30, 40]}, {"snr": [30, 1000]}]) == {"training_snr": [30, 1000]}
    assert training_snr([{"snr": [30, 40]}, {}]) == {}  # a stage on data of unknown noise level
    assert training_snr([{"snr": 30}, {"snr": [30, 1000]}]) == {}  # a hand-written record of another form


def test_cli_help_lists_every_command():
    text = subprocess.run([sys.executable, "-m", "nirvana_mri.cli", "--help"], capture_output=True, text=True).stdout
    for command in ("reconstruct", "finetune", "simulate", "convert"):
        assert command in text


def test_finetune_refuses_a_model_argument_the_method_does_not_take(dataset, tmp_path, capsys):
    common = ["--train", str(dataset / "train"), "--val", str(dataset / "val"), "--steps", "1", "--workers", "0"]
    out = tmp_path / "never"
    assert main(["finetune", *common, "--out", str(out), "--method", "unet",
                 "--model-args", '{"noise_conditioning": true}']) == 1
    err = capsys.readouterr().err
    assert "unet takes no model argument 'noise_conditioning'" in err and "Traceback" not in err
    assert not (out / "best").exists()


def test_finetune_cuda_graphs_refusals(dataset, tmp_path, capsys):
    """finetune --cuda-graphs: on the CPU a one-line error before any model or data is loaded; and
    enable_training_graphs refuses models without a backbone, with gradient checkpointing, and with trainable
    backbone weights, and wires training graphs into a frozen one (no CUDA work happens until a call)."""
    from nirvana_mri.train import enable_training_graphs

    out = tmp_path / "never"
    assert main(["finetune", "--train", str(dataset / "train"), "--val", str(dataset / "val"), "--out", str(out),
                 "--method", "nirvana_mri", "--model-args", json.dumps(TINY_ARGS), "--steps", "1",
                 "--device", "cpu", "--cuda-graphs"]) == 1
    err = capsys.readouterr().err
    assert "--cuda-graphs needs a CUDA device" in err and "Traceback" not in err and not out.exists()
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match="needs a CUDA device"):
        enable_training_graphs(NirvanaMRI(**TINY_ARGS), torch.device("cpu"))
    with pytest.raises(ValueError, match="with a backbone"):
        enable_training_graphs(NirvanaMRI(**{**TINY_ARGS, "backbone": None}), cuda)
    with pytest.raises(ValueError, match="do not combine"):
        enable_training_graphs(NirvanaMRI(**TINY_ARGS, gradient_checkpointing=True), cuda)
    with pytest.raises(ValueError, match="frozen backbone"):
        enable_training_graphs(NirvanaMRI(**TINY_ARGS, tune="lora"), cuda)
    model = NirvanaMRI(**TINY_ARGS)
    enable_training_graphs(model, cuda)
    assert model.backbone.train_graphs is not None and model.backbone.graphs is not None


def test_finetune_cuda_graphs_default(tmp_path):
    """Neither --cuda-graphs nor --no-cuda-graphs: training graphs for one process on a GPU with a frozen,
    non-checkpointed Nirvana-MRI backbone; not on the CPU, under torchrun, for codec-only models, with
    checkpointing or with trainable backbone weights. The flags decide when given."""
    from nirvana_mri.cli import build_parser
    from nirvana_mri.train import wants_training_graphs

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    model = NirvanaMRI(**TINY_ARGS)
    assert wants_training_graphs(None, cuda, model, 1)
    assert not wants_training_graphs(None, cpu, model, 1) and not wants_training_graphs(None, cuda, model, 2)
    for other in (NirvanaMRI(**{**TINY_ARGS, "backbone": None}), NirvanaMRI(**TINY_ARGS, gradient_checkpointing=True),
                  NirvanaMRI(**TINY_ARGS, tune="lora")):
        assert not wants_training_graphs(None, cuda, other, 1)
    assert not wants_training_graphs(False, cuda, model, 1) and wants_training_graphs(True, cuda, model, 2)
    parse = build_parser().parse_args
    base = ["finetune", "--train", "t", "--val", "v", "--out", "o"]
    assert [parse([*base, *flag]).cuda_graphs for flag in ([], ["--cuda-graphs"], ["--no-cuda-graphs"])] == [
        None, True, False]


def test_finetune_adds_the_noise_input_to_an_unconditioned_varnet(dataset, tmp_path):
    """finetune --init <e2e_varnet folder> --model-args '{"noise_conditioning": true}' (train_suite's
    e2e_varnet_noise continued from a copy of an unconditioned e2e_varnet)."""
    from nirvana_mri.baselines.learned import VarNetRecon
    from nirvana_mri.recon_models import load_recon_model, save_recon_model

    args = VarNetRecon.default_args("tiny")
    torch.manual_seed(0)
    save_recon_model(VarNetRecon(**args), tmp_path / "plain", "e2e_varnet", args)
    out = tmp_path / "run"
    assert main(["finetune", "--train", str(dataset / "train"), "--val", str(dataset / "val"), "--out", str(out),
                 "--init", str(tmp_path / "plain"), "--model-args", json.dumps({"noise_conditioning": True}),
                 "--batch-size", "2", "--val-every", "1", "--workers", "0", "--warmup", "1", "--steps", "1"]) == 0
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["method"] == "e2e_varnet" and config["model_args"] == {**args, "noise_conditioning": True}
    model, _ = load_recon_model(out / "best")  # saved with the FiLM: loads strictly, no override needed
    assert model.noise_conditioning
    assert any(".noise_film_" in name for name in model.state_dict())

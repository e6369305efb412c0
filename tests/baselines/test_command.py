"""`nirvana-mri benchmark` and benchmarks/quality.py: bad input fails in one line, good input reports."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from nirvana_mri.baselines.learned import UNetRecon
from nirvana_mri.cli import main
from nirvana_mri.recon_models import save_recon_model

from .conftest_paths import REPO
from .synth import write_fastmri_volume


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("cmd") / "data"
    data.mkdir()
    write_fastmri_volume(data / "one.h5", slices=2, h=48, w=48, coils=3, seed=7)
    return data


@pytest.fixture(scope="module")
def unet_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models") / "unet"
    torch.manual_seed(0)
    args = UNetRecon.default_args("tiny")
    save_recon_model(UNetRecon(**args), folder, "unet", args)
    return folder


def _fails(capsys, argv, needle):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert err.startswith("nirvana-mri benchmark: error:")


def test_help_explains_methods(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["benchmark", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in (
        "--data",
        "--methods",
        "--models-dir",
        "--accel",
        "cs_l1_wavelet",
        "NAME=PATH",
        "fully sampled",
    ):
        assert word in out


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    _fails(
        capsys, ["benchmark", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], "no fastMRI"
    )


def test_missing_data_folder(tmp_path, capsys):
    _fails(
        capsys,
        ["benchmark", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        "does not exist",
    )


def test_unknown_method(data_dir, tmp_path, capsys):
    argv = ["benchmark", "--data", str(data_dir), "--methods", "zero_filled,grappa", "--out", str(tmp_path)]
    _fails(capsys, argv, "unknown method 'grappa'")


def test_missing_model_folder(data_dir, tmp_path, capsys):
    argv = [
        "benchmark",
        "--data",
        str(data_dir),
        "--methods",
        f"unet={tmp_path / 'nope'}",
        "--out",
        str(tmp_path),
    ]
    _fails(capsys, argv, "does not exist")
    (tmp_path / "models").mkdir()
    models = str(tmp_path / "models")
    argv = [
        "benchmark",
        "--data",
        str(data_dir),
        "--methods",
        "unet",
        "--models-dir",
        models,
        "--out",
        str(tmp_path),
    ]
    _fails(capsys, argv, "no model folder")
    argv = [
        "benchmark",
        "--data",
        str(data_dir),
        "--models-dir",
        str(tmp_path / "absent"),
        "--out",
        str(tmp_path),
    ]
    _fails(capsys, argv, "--models-dir")


def test_bad_numbers(data_dir, tmp_path, capsys):
    _fails(
        capsys,
        ["benchmark", "--data", str(data_dir), "--max-volumes", "0", "--out", str(tmp_path)],
        "at least 1",
    )


def test_command_writes_reports(data_dir, unet_dir, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["benchmark", "--data", str(data_dir), "--methods", f"zero_filled,unet={unet_dir}", "--accel", "4",
            "--device", "cpu", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "quality.json").read_text())
    assert [(r["method"], r["accel"]) for r in results["rows"]] == [("zero_filled", 4), ("unet", 4)]
    assert results["command"].startswith("nirvana-mri benchmark --data")
    assert (out / "quality.md").exists() and (out / "quality.html").exists()


def test_failing_method_exits_nonzero_after_writing(data_dir, unet_dir, tmp_path, capsys):
    bad = tmp_path / "bad"
    save_recon_model(UNetRecon(in_chans=1, chans=4, num_pool_layers=2), bad, "unet", {"chans": 8})
    out = tmp_path / "report"
    argv = ["benchmark", "--data", str(data_dir), "--methods", f"zero_filled,bad={bad}", "--accel", "8",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    assert "failure" in capsys.readouterr().err
    md = (out / "quality.md").read_text()
    assert "| bad | 8x | failed |" in md and "## Errors" in md


def test_default_methods_include_every_model_folder(data_dir, unet_dir, tmp_path):
    from nirvana_mri.benchmark import resolve_methods

    names = [m.name for m in resolve_methods(None, unet_dir.parent)]
    assert names == ["zero_filled", "sense", "cs_l1_wavelet", "unet"]


def test_quality_script_end_to_end(data_dir, unet_dir, tmp_path):
    spec = importlib.util.spec_from_file_location("quality_script", REPO / "benchmarks" / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "results"
    argv = ["--data", str(data_dir), "--methods", f"zero_filled,sense,unet={unet_dir}", "--accel", "4", "8",
            "--max-slices-per-volume", "1", "--description", "synthetic test volume", "--no-progress",
            "--out", str(out)]  # fmt: skip
    assert module.main(argv) == 0
    results = json.loads((out / "quality.json").read_text())
    assert results["command"].startswith("python benchmarks/quality.py --data")
    assert results["data"]["description"] == "synthetic test volume"
    md = (out / "quality.md").read_text()
    assert "python benchmarks/quality.py" in md and "synthetic test volume" in md
    assert (out / "quality.html").read_text().count("data:image/png;base64,") == 3


def test_classical_regularisation_options(data_dir, tmp_path, capsys):
    """--sense-lambda / --cs-lambda reach the methods (and the report's settings); bad values fail in one line."""
    _fails(capsys, ["benchmark", "--data", str(data_dir), "--methods", "sense", "--sense-lambda", "-1",
                    "--out", str(tmp_path / "bad")], "--sense-lambda must be positive")
    runs = {}
    for lamda in ("0.001", "1.0"):
        out = tmp_path / lamda
        assert main(["benchmark", "--data", str(data_dir), "--methods", "sense", "--accel", "4",
                     "--sense-lambda", lamda, "--out", str(out), "--no-progress"]) == 0
        runs[lamda] = json.loads((out / "quality.json").read_text())
    assert runs["1.0"]["settings"]["classical_options"] == {"sense": {"lamda": 1.0}}
    assert runs["0.001"]["rows"][0]["psnr_mean"] != runs["1.0"]["rows"][0]["psnr_mean"]


def _train_suite():
    spec = importlib.util.spec_from_file_location("train_suite_script", REPO / "benchmarks" / "train_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_suite_e2e_varnet_noise(tmp_path, monkeypatch):
    """e2e_varnet_noise = e2e_varnet's sizes + the noise input; continued from a saved (maybe unconditioned)
    model, the launch asks finetune to add the input."""
    import argparse

    from nirvana_mri.backbone import default_backbone_path

    suite = _train_suite()
    specs = suite.method_specs(str(default_backbone_path()), None, {"num_cascades": 2})
    method, model_args = specs["e2e_varnet_noise"]
    assert method == "e2e_varnet" and model_args == {**specs["e2e_varnet"][1], "noise_conditioning": True}
    assert "noise_conditioning" not in specs["e2e_varnet"][1]
    launched = []
    monkeypatch.setattr(suite.subprocess, "Popen", lambda command, **kw: launched.append(command))
    init_dir = tmp_path / "stage1"
    (init_dir / "e2e_varnet_noise").mkdir(parents=True)
    (init_dir / "e2e_varnet_noise" / "config.json").write_text("{}")
    args = argparse.Namespace(out=str(tmp_path / "out"), init_dir=None, init_bundled=[], noise_conditioning=False,
                              train=["t"], val=["v"], steps=1, batch_size=1, lr=1e-3, val_every=1, val_volumes=1,
                              workers=0, seed=0, max_minutes=None, init_model_args="")
    suite.launch("e2e_varnet_noise", method, model_args, args, None)
    command = launched[-1]
    assert command[command.index("--method") + 1] == "e2e_varnet"
    assert json.loads(command[command.index("--model-args") + 1]) == model_args
    args.init_dir = str(init_dir)
    for name in ("e2e_varnet_noise", "e2e_varnet"):
        if name == "e2e_varnet":
            (init_dir / name).mkdir()
            (init_dir / name / "config.json").write_text("{}")
        suite.launch(name, *specs[name], args, None)
        command = launched[-1]
        assert command[command.index("--init") + 1] == str(init_dir / name)
        expected = {"noise_conditioning": True} if name == "e2e_varnet_noise" else {}
        assert json.loads(command[command.index("--model-args") + 1]) == expected
    # --init-model-args joins what a continued model is told (e.g. a third cascade grown on load)
    args.init_model_args = '{"num_cascades": 3}'
    suite.launch("e2e_varnet_noise", *specs["e2e_varnet_noise"], args, None)
    assert json.loads(launched[-1][launched[-1].index("--model-args") + 1]) == {"noise_conditioning": True,
                                                                                "num_cascades": 3}
    # a probe made before e2e_varnet_noise existed times it as e2e_varnet
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"rows": [{"method": "e2e_varnet", "train_step_seconds": 0.1}]}))
    steps, assignment = suite.plan_from_probe(str(probe), ["e2e_varnet", "e2e_varnet_noise"], [0, 1], 100)
    assert steps == int(0.85 * 100 / 0.1) and sorted(assignment.values()) == [0, 1]

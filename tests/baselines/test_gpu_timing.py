"""benchmarks/gpu_timing.py (seconds per slice of every model folder, on the CPU here) and
benchmarks/refresh_report.py --gpu-timing (merging CUDA timings into a quality report)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from nirvana_mri import benchmark, report
from nirvana_mri.backbone import preset
from nirvana_mri.baselines.learned import UNetRecon
from nirvana_mri.codecs import NirvanaMRI
from nirvana_mri.recon_models import save_recon_model

from .conftest_paths import REPO
from .synth import write_fastmri_volume

TINY = preset("tiny", num_hidden_layers=2).to_dict()
SMALL_CODECS = dict(num_cascades=1, patch_size=8, codec_channels=4, sens_chans=2, sens_pools=2)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_timing():
    return _script("gpu_timing")


@pytest.fixture(scope="module")
def refresh():
    return _script("refresh_report")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_timing")
    data = root / "data"
    data.mkdir()
    write_fastmri_volume(data / "vol_a.h5", slices=3, seed=1)
    write_fastmri_volume(data / "vol_b.h5", slices=2, seed=2)
    torch.manual_seed(0)
    unet_args = UNetRecon.default_args("tiny")
    nirvana_args = dict(backbone="random", backbone_config=TINY, **SMALL_CODECS)

    loaded = root / "loaded"  # trained-style folders: config.json + weights
    save_recon_model(UNetRecon(**unet_args), loaded / "unet", "unet", unet_args)
    save_recon_model(NirvanaMRI(**nirvana_args), loaded / "nirvana_mri_random_backbone", "nirvana_mri", nirvana_args)
    (loaded / "broken").mkdir()  # a config without weights: fails to load, the others go on
    (loaded / "broken" / "config.json").write_text(json.dumps({"method": "unet", "model_args": unet_args}))

    # architecture-only folders: config.json alone (the GPU call carries no weights)
    arch = root / "arch"
    save_recon_model(UNetRecon(**unet_args), arch / "unet", "unet", unet_args)
    configs = {
        "nirvana_mri_no_trigger": {"backbone": "bundled", "backbone_overrides": {"use_trigger": False},
                                   "backbone_checksum": 123.0, **SMALL_CODECS},
        "transformer_backbone": {"backbone": "/old/place/.carry/transformer", **SMALL_CODECS},
    }
    for name, args in configs.items():
        (arch / name).mkdir()
        (arch / name / "config.json").write_text(json.dumps({"method": "nirvana_mri", "model_args": args}))
    bundled_config = root / "bundled_config.json"
    bundled_config.write_text(json.dumps(TINY))
    carry = root / "carry" / ".carry" / "transformer"  # the moved backbone folder: its config.json only
    carry.mkdir(parents=True)
    (carry / "config.json").write_text(json.dumps({**TINY, "hidden_size": 64, "num_heads": 1}))
    return {"root": root, "data": data, "loaded": loaded, "arch": arch, "bundled_config": bundled_config,
            "path_map": f"/old/place={root / 'carry'}"}


@pytest.fixture()
def no_bundled_backbone(monkeypatch, tmp_path):
    """As on a checkout without nirvana_mri/weights/backbone: any use of the bundled weights fails."""
    import nirvana_mri.backbone
    import nirvana_mri.codecs.model

    absent = tmp_path / "absent_weights"
    monkeypatch.setattr(nirvana_mri.backbone, "default_backbone_path", lambda: absent)
    monkeypatch.setattr(nirvana_mri.codecs.model, "default_backbone_path", lambda: absent)
    return absent


def _args(setup, models, out, *extra):
    return ["--models-dir", str(setup[models]), "--data", str(setup["data"]), "--out", str(out), "--device", "cpu",
            "--volumes", "2", "--max-slices-per-volume", "2", "--batch-size", "2", *extra]


def test_loaded_models_timed_on_the_cpu(gpu_timing, setup, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert gpu_timing.main(_args(setup, "loaded", out)) == 1  # one broken folder: recorded, exit 1
    result = json.loads(out.read_text())
    assert result["command"].startswith("python benchmarks/gpu_timing.py --models-dir")
    assert result["architecture_only"] is False and result["hardware"]["gpu"] is None
    assert {"nirvana_mri", "torch"} <= set(result["versions"])
    assert set(result["data"]["volumes"]) == {"vol_a.h5", "vol_b.h5"}
    rows = result["rows"]
    assert {(r["method"], r["accel"]) for r in rows} == {
        (m, a) for m in ("unet", "nirvana_mri_random_backbone") for a in (4, 8)}
    for row in rows:
        assert row["sec_per_slice_cpu"] > 0 and "sec_per_slice_gpu" not in row  # the key says the device
        assert row["slices"] == 4 and row["batch_size"] == 2 and row["how"] == "loaded"
    assert [e["method"] for e in result["errors"]] == ["broken"]
    assert "model.safetensors" in result["errors"][0]["error"]
    err = capsys.readouterr().err
    assert "unet 4x:" in err and "broken: failed" in err


def test_cuda_graphs_flag(gpu_timing, setup, tmp_path, capsys):
    """--cuda-graphs on the CPU stops in one line; the graphed pass itself (eager on the CPU: nothing is
    captured) reports its agreement with eager, keeps no graph and leaves graphs off afterwards."""
    assert gpu_timing.main(_args(setup, "loaded", tmp_path / "t.json", "--cuda-graphs")) == 2
    assert "--cuda-graphs needs a CUDA device" in capsys.readouterr().err and not (tmp_path / "t.json").exists()
    torch.manual_seed(0)
    model = NirvanaMRI(backbone="random", backbone_config=TINY, **SMALL_CODECS).eval()
    assert gpu_timing.supports_cuda_graphs(model) and not gpu_timing.supports_cuda_graphs(torch.nn.Linear(2, 2))
    vols = [benchmark.load_volume(p, 2) for p in benchmark.list_volumes(setup["data"])[:1]]
    masks = {(v.name, 4): benchmark.make_mask(v.kspace.shape[-2:], 4, 0, v.name) for v in vols}
    result = gpu_timing.time_with_graphs(model, vols, masks, [4], torch.device("cpu"), 2, 1)
    assert result["rel_err_vs_eager"] == 0.0 and result["graphs_kept"] == 0 and result["refused"] == []
    assert result["times"][4][0] > 0 and model.backbone.graphs is None


def test_architecture_only_replaces_backbones_and_reads_no_weights(
        gpu_timing, setup, tmp_path, no_bundled_backbone):
    out = tmp_path / "t.json"
    argv = _args(setup, "arch", out, "--accels", "4", "--architecture-only",
                 "--bundled-backbone-config", str(setup["bundled_config"]), "--path-map", setup["path_map"])
    assert gpu_timing.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["architecture_only"] is True and result["errors"] == []
    assert {r["method"] for r in result["rows"]} == {"unet", "nirvana_mri_no_trigger", "transformer_backbone"}
    methods = result["methods"]
    assert methods["unet"]["how"] == "architecture_only"
    replaced = "architecture_only; backbone replaced by random with the same config"
    assert methods["nirvana_mri_no_trigger"]["how"] == replaced
    assert methods["nirvana_mri_no_trigger"]["backbone"] == {"was": "bundled", "config": str(setup["bundled_config"])}
    assert methods["transformer_backbone"]["how"] == replaced
    carried = setup["root"] / "carry" / ".carry" / "transformer"
    assert methods["transformer_backbone"]["path_rewrites"] == {
        "backbone": ["/old/place/.carry/transformer", str(carried)]}
    assert methods["transformer_backbone"]["backbone"]["config"] == str(carried / "config.json")

    # what was built: the stand-in config, the override still applied, the checksum dropped
    plan = gpu_timing.plan_model("nirvana_mri_no_trigger", setup["arch"] / "nirvana_mri_no_trigger", True, [],
                                 setup["bundled_config"])
    assert "backbone_checksum" not in plan["model_args"]
    model = gpu_timing.build_model(plan, setup["arch"] / "nirvana_mri_no_trigger", torch.device("cpu"))
    config = model.backbone.backbone.config
    assert config.use_trigger is False and config.hidden_size == TINY["hidden_size"]
    plan = gpu_timing.plan_model("transformer_backbone", setup["arch"] / "transformer_backbone", True,
                                 gpu_timing.parse_path_map([setup["path_map"]]), None)
    model = gpu_timing.build_model(plan, setup["arch"] / "transformer_backbone", torch.device("cpu"))
    assert model.backbone.backbone.config.hidden_size == 64


def test_unmapped_or_missing_paths_fail_in_one_line(gpu_timing, setup, tmp_path, capsys):
    out = tmp_path / "t.json"
    flags = ["--architecture-only", "--bundled-backbone-config", str(setup["bundled_config"])]
    assert gpu_timing.main(_args(setup, "arch", out, *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "/old/place/.carry/transformer" in err and "--path-map" in err
    assert not out.exists()  # stopped before any timing
    assert gpu_timing.main(_args(setup, "arch", out, *flags, "--path-map", "/old/place=/nowhere")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mapped to /nowhere/.carry/transformer" in err
    assert gpu_timing.map_path("/old/placeholder", gpu_timing.parse_path_map(["/old/place=/new"])) == "/old/placeholder"
    assert gpu_timing.main(_args(setup, "arch", out, "--path-map", "no-equals-sign")) == 2
    assert "expected OLD=NEW" in capsys.readouterr().err


def test_bundled_without_its_weights_or_a_stand_in_config_fails_in_one_line(
        gpu_timing, setup, tmp_path, capsys, no_bundled_backbone):
    out = tmp_path / "t.json"
    assert gpu_timing.main(_args(setup, "arch", out, "--architecture-only", "--path-map", setup["path_map"])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--bundled-backbone-config" in err and str(no_bundled_backbone) in err


# --------------------------------------------------------------------------------------------------
# the merge


@pytest.fixture()
def quality_json(setup, tmp_path):
    methods = benchmark.resolve_methods(["zero_filled", f"unet={setup['loaded'] / 'unet'}"])
    results = benchmark.run_benchmark(setup["data"], methods, (4, 8), max_volumes=1, max_slices_per_volume=1,
                                      device="cpu", command="python benchmarks/quality.py --test")
    results["notes"] = ["s/slice GPU of the learned methods: an old probe note", "another note"]
    return report.write_report(results, tmp_path / "report")["json"]


def _timing(tmp_path, device="cuda", key="sec_per_slice_gpu"):
    timing = {
        "command": "python benchmarks/gpu_timing.py --models-dir M --data D --out t.json --architecture-only",
        "date": "2026-11-29T00:00:00+00:00", "hardware": {"gpu": "NVIDIA H200" if device == "cuda" else None},
        "versions": {"torch": "x"}, "architecture_only": True,
        "data": {"dir": "D", "volumes": {"a.h5": {"slices": 3, "coils": 8, "kspace_shape": [256, 256]}}},
        "settings": {"batch_size": 8},
        "rows": [{"method": "unet", "accel": 4, key: 0.0123, "slices": 3, "batch_size": 8, "device": device,
                  "how": "architecture_only"},
                 {"method": "unet", "accel": 8, key: 0.0456, "slices": 3, "batch_size": 8, "device": device,
                  "how": "architecture_only"},
                 {"method": "not_in_report", "accel": 4, key: 0.5, "slices": 3, "batch_size": 8,
                  "device": device, "how": "architecture_only"}],
        "errors": [],
    }
    path = tmp_path / f"timing_{device}.json"
    path.write_text(json.dumps(timing))
    return path


def test_merge_fills_the_gpu_column_with_provenance(refresh, quality_json, tmp_path):
    timing = _timing(tmp_path)
    assert refresh.main(["--report", str(quality_json), "--gpu-timing", str(timing)]) == 0
    merged = json.loads(quality_json.read_text())
    rows = {(r["method"], r["accel"]): r for r in merged["rows"]}
    assert rows[("unet", 4)]["sec_per_slice_gpu"] == 0.0123 and rows[("unet", 8)]["sec_per_slice_gpu"] == 0.0456
    assert rows[("unet", 4)]["sec_per_slice_gpu_source"] == str(timing)
    assert rows[("zero_filled", 4)]["sec_per_slice_gpu"] is None  # only rows present in both
    provenance = merged["gpu_timing"]
    assert provenance["gpu"] == "NVIDIA H200" and provenance["architecture_only"] is True
    assert provenance["source"] == str(timing) and provenance["command"].startswith("python benchmarks/gpu_timing")
    assert provenance["not_in_report"] == ["not_in_report 4x"]
    assert merged["notes"] == ["another note"]  # the stale probe note went with the old column
    md = quality_json.with_suffix(".md").read_text()
    unet_4x = next(line for line in md.splitlines() if line.startswith("| unet | 4x |"))
    assert "| 0.012 |" in unet_4x
    assert "| 0.046 |" in next(line for line in md.splitlines() if line.startswith("| unet | 8x |"))
    line = next(line for line in md.splitlines() if line.startswith("s/slice GPU: measured separately on"))
    assert "NVIDIA H200" in line and "`python benchmarks/gpu_timing.py --models-dir M" in line
    assert "architecture-only: same model configs, untrained weights" in line
    assert "time does not depend on the weights" in line
    assert "s/slice GPU: measured separately on NVIDIA H200" in quality_json.with_suffix(".html").read_text()


def test_merge_refuses_a_cpu_timing_file(refresh, quality_json, tmp_path, capsys):
    before = quality_json.read_text()
    timing = _timing(tmp_path, device="cpu", key="sec_per_slice_cpu")
    assert refresh.main(["--report", str(quality_json), "--gpu-timing", str(timing)]) == 2
    err = capsys.readouterr().err
    assert "not a CUDA timing file" in err and "cpu" in err
    assert quality_json.read_text() == before


def test_merge_methods_from_another_run(tmp_path):
    """refresh_report.py --merge-methods-from: the other run's methods replace or join this report's rows
    (per-volume values too, and the markdown names the second command); a different protocol or other
    volumes are refused."""
    refresh = _script("refresh_report")
    base = {"settings": {"accels": [4], "seed": 0, "max_slices_per_volume": 3}, "command": "first",
            "rows": [{"method": "a", "accel": 4}, {"method": "b", "accel": 4}],
            "per_volume": [{"method": m, "accel": 4, "volume": "v1", "n_slices": 3, "ssim": 0.5} for m in "ab"],
            "errors": [], "methods": [{"name": "a"}, {"name": "b"}]}
    other = {"settings": dict(base["settings"]), "command": "second", "date": "d",
             "rows": [{"method": "b", "accel": 4, "ssim_mean": 0.9}, {"method": "c", "accel": 4}],
             "per_volume": [{"method": m, "accel": 4, "volume": "v1", "n_slices": 3, "ssim": 0.9} for m in "bc"],
             "errors": [], "methods": [{"name": "b"}, {"name": "c"}]}
    merged = json.loads(json.dumps(base))
    assert refresh.merge_methods(merged, other, "o.json") == ["b", "c"]
    assert sorted(r["method"] for r in merged["rows"]) == ["a", "b", "c"]
    assert [r.get("ssim_mean") for r in merged["rows"] if r["method"] == "b"] == [0.9]
    assert sorted((v["method"], v["ssim"]) for v in merged["per_volume"]) == [("a", 0.5), ("b", 0.9), ("c", 0.9)]
    assert merged["merged_runs"][0]["command"] == "second"
    with pytest.raises(ValueError, match="protocol"):
        refresh.merge_methods(json.loads(json.dumps(base)), dict(other, settings={**base["settings"], "seed": 1}), "o")
    moved = dict(other, per_volume=[dict(v, volume="v2") for v in other["per_volume"]])
    with pytest.raises(ValueError, match="volumes"):
        refresh.merge_methods(json.loads(json.dumps(base)), moved, "o")


def test_rename_method_before_a_merge(tmp_path):
    """refresh_report.py --rename-method OLD=NEW: every row, per-volume value, method entry and merged run of
    OLD becomes NEW (so a new model's rows can be merged under the old name); an unknown OLD or a NEW that
    exists already is refused with exit 2 and the report left as it was."""
    refresh = _script("refresh_report")
    report = {"settings": {"accels": [4]}, "command": "first",
              "rows": [{"method": "a", "accel": 4}, {"method": "shipped", "accel": 4, "ssim_mean": 0.5}],
              "per_volume": [{"method": m, "accel": 4, "volume": "v1", "n_slices": 3, "ssim": 0.5}
                             for m in ("a", "shipped")],
              "errors": [{"method": "shipped", "file": "x"}], "methods": [{"name": "a"}, {"name": "shipped"}],
              "merged_runs": [{"methods": ["shipped"], "command": "second"}]}
    renamed = json.loads(json.dumps(report))
    refresh.rename_method(renamed, "shipped", "shipped_old")
    assert [r["method"] for r in renamed["rows"]] == ["a", "shipped_old"]
    assert [v["method"] for v in renamed["per_volume"]] == ["a", "shipped_old"]
    assert renamed["errors"][0]["method"] == "shipped_old"
    assert [m["name"] for m in renamed["methods"]] == ["a", "shipped_old"]
    assert renamed["merged_runs"][0]["methods"] == ["shipped_old"]
    with pytest.raises(ValueError, match="no method"):
        refresh.rename_method(json.loads(json.dumps(report)), "missing", "x")
    with pytest.raises(ValueError, match="already"):
        refresh.rename_method(json.loads(json.dumps(report)), "shipped", "a")
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(report))
    assert refresh.main(["--report", str(path), "--rename-method", "shipped"]) == 2
    assert json.loads(path.read_text()) == report

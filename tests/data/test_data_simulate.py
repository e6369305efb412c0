"""Simulation: the forward model, noise, splits by subject, fastMRI compatibility, determinism."""

from __future__ import annotations

import json

import h5py
import ismrmrd.xsd
import nibabel as nib
import numpy as np
import pytest
from conftest import SMALL
from fastmri.data import SliceDataset
from fastmri.data.subsample import EquispacedMaskFractionFunc
from fastmri.data.transforms import VarNetDataTransform
from PIL import Image

from nirvana_mri.cli import main
from nirvana_mri.data import read_scan, simulate_dataset, simulate_slice, simulate_volume
from nirvana_mri.data.simulate import assign_splits, object_mask, rss_target, split_counts
from nirvana_mri.physics import fft2c_np, ifft2c_np, rss_np


def _disc(size=48, complex_phase=False):
    yy, xx = np.mgrid[:size, :size] - size / 2
    image = ((yy / (0.4 * size)) ** 2 + (xx / (0.3 * size)) ** 2 < 1).astype(np.float32)
    image *= 1 + 0.3 * np.cos(xx / 3)
    if complex_phase:
        return (image * np.exp(1j * xx / 10)).astype(np.complex64)
    return image


def test_forward_model_without_noise():
    image = _disc(complex_phase=True)
    sim = simulate_slice(image, coils=6, snr=None, seed=0)
    sens = sim.sensitivities[0]
    assert sim.kspace.shape == (1, 6, 48, 48) and sim.kspace.dtype == np.complex64
    np.testing.assert_allclose(sim.kspace[0], fft2c_np(sens * image), atol=1e-4 * np.abs(sim.kspace).max())
    # complex sources keep their phase: the sensitivity-weighted combination returns the image itself
    combined = np.sum(np.conj(sens) * ifft2c_np(sim.kspace[0]), axis=0) / np.maximum(
        np.sum(np.abs(sens) ** 2, 0), 1e-9
    )
    inside = object_mask(np.abs(image))
    np.testing.assert_allclose(combined[inside], image[inside], atol=1e-3)
    # sum |S|^2 averages 1 over the object
    assert np.mean(np.sum(np.abs(sens) ** 2, axis=0)[inside]) == pytest.approx(1.0, rel=0.05)


def test_magnitude_images_get_smooth_phase():
    sim = simulate_slice(_disc(), coils=4, snr=None, seed=1)
    phase = np.angle(sim.image[0])
    inside = object_mask(np.abs(sim.image[0]))
    assert np.std(phase[inside]) > 0.1  # there is a phase ...
    step = np.abs(np.angle(np.exp(1j * np.diff(phase, axis=1))))[inside[:, 1:] & inside[:, :-1]]
    assert step.max() < 0.5  # ... and it is smooth (< 0.5 rad per pixel)
    np.testing.assert_allclose(np.abs(sim.image[0]), _disc(), atol=1e-5)


@pytest.mark.parametrize("oversample", [False, True])
def test_target_is_rss_of_fully_sampled_coil_images(oversample):
    sim = simulate_volume(np.stack([_disc(), _disc() * 0.5]), coils=5, snr=15, rng=3, oversample=oversample)
    expected_shape = (2, 5, 96 if oversample else 48, 48)
    assert sim.kspace.shape == expected_shape and sim.target.shape == (2, 48, 48)
    reference = rss_np(ifft2c_np(sim.kspace.astype(np.complex128)))
    top = (reference.shape[-2] - 48) // 2
    reference = reference[:, top : top + 48]
    np.testing.assert_allclose(sim.target, reference, rtol=0, atol=1e-5 * reference.max())
    np.testing.assert_allclose(
        rss_target(sim.kspace, (48, 48)), sim.target, rtol=0, atol=1e-5 * reference.max()
    )


@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_noise_level_and_correlation(correlation):
    image = _disc(64)
    clean = simulate_slice(image, coils=8, snr=None, seed=5, noise_correlation=correlation)
    noisy = simulate_slice(image, coils=8, snr=10, seed=5, noise_correlation=correlation)
    noise = ifft2c_np(noisy.kspace[0]) - ifft2c_np(clean.kspace[0])  # same seed: same coils and phase
    expected = np.abs(clean.image[0])[object_mask(np.abs(clean.image[0]))].mean() / 10
    assert noisy.noise_std == pytest.approx(expected, rel=1e-6)
    assert np.sqrt(np.mean(np.abs(noise) ** 2)) == pytest.approx(expected, rel=0.05)
    flat = noise.reshape(8, -1)
    corr = np.abs(np.corrcoef(flat))[~np.eye(8, dtype=bool)]
    if correlation == 0:
        assert corr.max() < 0.05
    else:
        assert corr.max() > 0.2
        np.testing.assert_allclose(np.cov(flat), noisy.noise_covariance * expected**2, atol=0.1 * expected**2)


def test_coil_counts_and_validation():
    for coils in (1, 4, 32):
        assert simulate_slice(_disc(32), coils=coils, seed=0).kspace.shape[1] == coils
    with pytest.raises(ValueError, match="coils"):
        simulate_slice(_disc(32), coils=65)
    with pytest.raises(ValueError, match="snr"):
        simulate_slice(_disc(32), snr=-1)


def test_split_counts_and_assignment():
    assert split_counts(6, (0.7, 0.15, 0.15)) == (4, 1, 1)
    assert split_counts(10, (0.7, 0.15, 0.15)) == (7, 2, 1)
    assert split_counts(3, (0.7, 0.15, 0.15)) == (1, 1, 1)
    assert split_counts(1, (0.7, 0.15, 0.15)) == (1, 0, 0)
    assert split_counts(5, (1, 0, 0)) == (5, 0, 0)
    with pytest.raises(ValueError):
        split_counts(5, (0.5, -0.1, 0.6))
    keys = [f"src:{i}" for i in range(20)] * 3  # every subject has several slices / volumes
    assignment = assign_splits(keys, (0.7, 0.15, 0.15), seed=0)
    assert len(assignment) == 20 and assignment == assign_splits(list(reversed(keys)), (0.7, 0.15, 0.15), 0)
    assert sorted(assignment.values()).count("val") == 3  # split_counts(20) = (14, 3, 3)
    # stratified by source: two sources of 6 subjects each both reach every split
    mixed = assign_splits([f"a:{i}" for i in range(6)] + [f"b:{i}" for i in range(6)], (0.7, 0.15, 0.15), 0)
    for source in "ab":
        assert {v for k, v in mixed.items() if k.startswith(source)} == {"train", "val", "test"}


def test_small_dataset_reads_with_fastmri(small_dataset):
    out, summary = small_dataset
    assert summary["volumes"] == 4 and summary["slices"] == 12
    assert {k: len(v) for k, v in summary["files"].items()} == {"train": 2, "val": 1, "test": 1}
    mask_func = EquispacedMaskFractionFunc([0.08], [4])
    for split in ("train", "val", "test"):
        dataset = SliceDataset(out / split, challenge="multicoil", transform=VarNetDataTransform(mask_func))
        assert len(dataset) == 3 * len(summary["files"][split])
        sample = dataset[0]
        assert sample.masked_kspace.shape == (SMALL["coils"], 48, 48, 2)
        assert sample.target.shape == (48, 48) and sample.crop_size == (48, 48)
        assert sample.max_value > 0
    for path in summary["files"]["train"]:
        with h5py.File(path, "r") as handle:
            kspace = handle["kspace"][()]
            target = handle["reconstruction_rss"][()]
            assert kspace.dtype == np.complex64 and target.dtype == np.float32
            np.testing.assert_allclose(target, rss_np(ifft2c_np(kspace)), rtol=0, atol=1e-5 * target.max())
            attrs = dict(handle.attrs)
            assert attrs["acquisition"] in {
                "AXT1",
                "AXT2",
                "AXFLAIR",
                "CORT1",
                "CORT2",
                "CORFLAIR",
                "SAGT1",
                "SAGT2",
                "SAGFLAIR",
            }
            assert attrs["max"] == pytest.approx(float(target.max()))
            assert attrs["norm"] == pytest.approx(float(np.linalg.norm(target)), rel=1e-5)
            assert isinstance(attrs["patient_id"], str) and attrs["patient_id"]
            header = ismrmrd.xsd.CreateFromDocument(handle["ismrmrd_header"][()])  # schema-valid
            assert header.encoding[0].encodedSpace.matrixSize.x == 48
            assert header.encoding[0].reconSpace.matrixSize.y == 48
            assert header.acquisitionSystemInformation.receiverChannels == SMALL["coils"]


def test_manifest_splits_by_subject(small_dataset):
    out, summary = small_dataset
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["derived_from_one_brain"] is True
    assert "ONE averaged brain" in " ".join(manifest["notes"])
    assert "MNI152" in manifest["sources"][0]["license"]
    subjects = [set(manifest["subjects"][s]) for s in ("train", "val", "test")]
    assert all(not (a & b) for i, a in enumerate(subjects) for b in subjects[i + 1 :])
    for split in ("train", "val", "test"):
        for item in manifest["splits"][split]:
            assert (out / item["file"]).exists() and item["subject"] in manifest["subjects"][split]
    assert manifest["parameters"]["seed"] == 0 and manifest["parameters"]["coils"] == SMALL["coils"]


def test_determinism_by_seed(small_dataset, tmp_path):
    out, summary = small_dataset
    again = simulate_dataset(tmp_path / "again", seed=0, **{**SMALL, "max_subjects": 2})
    other = simulate_dataset(tmp_path / "other", seed=1, **{**SMALL, "max_subjects": 2})
    name = "sim_AXT1_mni152-p000.h5"
    first = next(p for files in summary["files"].values() for p in files if p.name == name)
    second = next(p for files in again["files"].values() for p in files if p.name == name)
    third = next(p for files in other["files"].values() for p in files if p.name == name)
    with h5py.File(first) as a, h5py.File(second) as b, h5py.File(third) as c:
        np.testing.assert_array_equal(a["kspace"][()], b["kspace"][()])  # same seed: same bytes
        assert a["ismrmrd_header"][()] == b["ismrmrd_header"][()]
        assert not np.array_equal(a["kspace"][()], c["kspace"][()])
    with pytest.raises(ValueError, match="already holds"):
        simulate_dataset(tmp_path / "again", seed=0, **SMALL)


def test_overwrite_replaces_only_previous_files(tmp_path):
    out = tmp_path / "ds"
    simulate_dataset(out, seed=0, coils=2, matrix=32, slices_per_volume=1, max_subjects=3)
    keep = out / "train" / "notes.txt"
    keep.write_text("mine")
    summary = simulate_dataset(
        out, seed=0, coils=2, matrix=32, slices_per_volume=1, max_subjects=3, overwrite=True
    )
    assert keep.exists() and summary["volumes"] == 3
    assert sorted(p.name for p in (out / "train").glob("*.h5")) == sorted(
        p.name for p in summary["files"]["train"]
    )


def test_anatomy_file_source(anatomy_dir, tmp_path):
    summary = simulate_dataset(
        tmp_path / "ants", source=anatomy_dir / "ants_t1_slices.h5", coils=4, matrix=64, seed=0
    )
    assert summary["volumes"] == 6 and summary["slices"] == 6  # 6 subjects, one slice each
    manifest = json.loads((tmp_path / "ants" / "manifest.json").read_text())
    assert manifest["sources"][0]["license"] == "Apache-2.0"
    assert manifest["derived_from_one_brain"] is False
    assert sum(len(v) for v in manifest["subjects"].values()) == 6


def test_anatomy_shared_subjects_stay_in_one_split(anatomy_dir, tmp_path):
    sources = [anatomy_dir / "nichart_t1_2mm.h5", anatomy_dir / "nichart_flair_2mm.h5"]
    summary = simulate_dataset(
        tmp_path / "nichart", source=sources, coils=2, matrix=32, seed=0, slices_per_volume=1, max_subjects=5
    )
    assert summary["volumes"] == 10  # T1 and FLAIR of the same 5 subjects
    manifest = json.loads((tmp_path / "nichart" / "manifest.json").read_text())
    split_of = {}
    for split, items in manifest["splits"].items():
        for item in items:
            split_of.setdefault(item["subject"], set()).add(split)
    assert len(split_of) == 5 and all(len(s) == 1 for s in split_of.values())


def test_anatomy_resampling_keeps_aspect_and_complex_phase(anatomy_dir, tmp_path):
    summary = simulate_dataset(
        tmp_path / "ixi",
        source=anatomy_dir / "ixi_t1_2mm.h5",
        coils=2,
        matrix=64,
        seed=0,
        slices_per_volume=2,
        max_subjects=3,
    )
    path = summary["files"]["train"][0]
    target = read_scan(path).target
    assert target.shape == (2, 64, 64)
    columns = target.mean(axis=(0, 1))  # 120 x 90 -> 64 x 48, zero-padded by 8 columns each side
    assert columns[:6].max() < 0.1 * columns.max() and columns[-6:].max() < 0.1 * columns.max()
    from nirvana_mri.data.sources import load_source

    specs, info = load_source(anatomy_dir / "siat_t2_complex.h5", 256, None, 2, 0)
    volume = specs[0].load()
    assert np.iscomplexobj(volume.images) and info.kind == "complex image"


def test_user_nifti_png_and_h5_sources(tmp_path):
    volume = np.zeros((40, 30, 6), np.float32)
    volume[8:32, 5:25, 1:5] = 1.0
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 2.0, 3.0, 1.0])), str(tmp_path / "head.nii.gz"))
    pictures = tmp_path / "pngs"
    pictures.mkdir()
    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((20, 30)) * 255).astype(np.uint8)).save(
            pictures / f"{i}.png"
        )
    with h5py.File(tmp_path / "mine.h5", "w") as out:
        out.create_dataset("images", data=np.random.default_rng(0).random((3, 24, 24)).astype(np.float32))
    with pytest.warns(UserWarning, match="one subject"):
        summary = simulate_dataset(
            tmp_path / "user",
            source=[tmp_path / "head.nii.gz", pictures, tmp_path / "mine.h5"],
            coils=2,
            matrix=32,
            seed=0,
        )
    assert summary["volumes"] == 3 and summary["slices"] == 4 + 2 + 3
    manifest = json.loads((tmp_path / "user" / "manifest.json").read_text())
    assert all("unknown" in s["license"] for s in manifest["sources"])


def test_simulate_command(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "simulate",
            "--out",
            str(out),
            "--seed",
            "0",
            "--coils",
            "2",
            "--matrix",
            "32",
            "--slices-per-volume",
            "1",
            "--max-subjects",
            "3",
            "--quiet",
            "--oversample",
        ]
    )
    assert code == 0
    assert "simulated 3 volumes" in capsys.readouterr().out
    scan = read_scan(next((out / "train").glob("*.h5")))
    assert (
        scan.kspace.shape == (1, 2, 64, 32)
        and scan.recon_size == (32, 32)
        and scan.target.shape == (1, 32, 32)
    )
    assert scan.header.encoded_fov_mm[0] == pytest.approx(2 * scan.header.recon_fov_mm[0])


def test_snr_range_gives_each_volume_its_own_noise_level(tmp_path):
    """--snr LOW:HIGH: per-volume SNRs inside the range, spread over it, stored in attrs and manifest."""
    out = tmp_path / "range"
    code = main(["simulate", "--out", str(out), "--coils", "4", "--matrix", "64", "--slices-per-volume", "1",
                 "--max-subjects", "6", "--snr", "10:1000", "--seed", "3", "--quiet"])
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parameters"]["snr"] == [10.0, 1000.0]
    entries = [item for split in manifest["splits"].values() for item in split]
    snrs = [item["snr"] for item in entries]
    assert len(entries) == 6 and all(10 <= v <= 1000 for v in snrs) and max(snrs) / min(snrs) > 3
    for item in entries:
        with h5py.File(out / item["file"]) as f:
            assert f.attrs["snr"] == pytest.approx(item["snr"])


@pytest.mark.parametrize(
    "args,problem",
    [
        (["--coils", "0"], "--coils"),
        (["--coils", "65"], "--coils"),
        (["--source", "/no/such/file.h5"], "source not found"),
        (["--snr", "0"], "--snr"),
        (["--snr", "50:20"], "--snr"),
        (["--noise-correlation", "1"], "--noise-correlation"),
        (["--matrix", "8"], "--matrix"),
    ],
)
def test_simulate_command_bad_arguments(tmp_path, capsys, args, problem):
    code = main(["simulate", "--out", str(tmp_path / "x"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 1 and problem in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_default_simulate_command_is_fast_and_fastmri_reads_it(tmp_path, capsys):
    """Issue 3's bar: `nirvana-mri simulate --out DIR --seed 0` in under a minute, readable by fastMRI."""
    import time

    out = tmp_path / "default"
    started = time.perf_counter()
    assert main(["simulate", "--out", str(out), "--seed", "0", "--quiet"]) == 0
    elapsed = time.perf_counter() - started
    assert elapsed < 60, f"default simulate took {elapsed:.1f} s"
    total = 0
    for split in ("train", "val", "test"):
        dataset = SliceDataset(out / split, challenge="multicoil", transform=VarNetDataTransform())
        assert len(dataset) > 0
        total += len(dataset)
        kspace, mask, target, attrs, fname, _ = SliceDataset(out / split, challenge="multicoil")[0]
        assert kspace.shape == (16, 256, 256) and target.shape == (256, 256) and mask is None
    assert total == 48
    assert "simulated 6 volumes (48 slices, 16 coils)" in capsys.readouterr().out

"""ReconSliceDataset items and same-shape, rank-sharded batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SMALL
from data_helpers import random_kspace, rss_of, write_fastmri
from torch.utils.data import DataLoader

from nirvana_mri.data import ReconSliceDataset, center_width, read_scan, same_shape_batches


def test_items_follow_fastmri_conventions(small_dataset):
    out, summary = small_dataset
    dataset = ReconSliceDataset(out / "train", seed=0)
    assert len(dataset) == 3 * len(summary["files"]["train"])
    item = dataset[1]
    coils = SMALL["coils"]
    assert item["masked_kspace"].shape == (coils, 48, 48, 2) and item["masked_kspace"].dtype == torch.float32
    assert item["mask"].shape == (1, 1, 48, 1) and item["mask"].dtype == torch.float32
    assert item["acceleration"] in (4, 8) and item["slice"] == 1
    assert item["target"].shape == (48, 48) and item["crop_size"] == (48, 48)
    scan = read_scan(out / "train" / item["fname"])
    np.testing.assert_array_equal(item["target"].numpy(), scan.target[1])
    assert item["max_value"] == pytest.approx(scan.attrs["max"])
    unmeasured = item["mask"][0, 0, :, 0] == 0
    assert not item["masked_kspace"][:, :, unmeasured].any()
    measured = ~unmeasured
    full = torch.view_as_real(torch.from_numpy(scan.kspace[1]))
    torch.testing.assert_close(item["masked_kspace"][:, :, measured], full[:, :, measured])
    assert item["num_low_frequencies"] == round(48 * {4: 0.08, 8: 0.04}[item["acceleration"]])
    assert center_width(item["mask"][0, :, :, 0].numpy()) >= item["num_low_frequencies"]


def test_seeded_masks_are_fixed_per_volume_and_unseeded_vary(small_dataset):
    out, _ = small_dataset
    seeded = ReconSliceDataset(out / "train", seed=7)
    first = [seeded[i]["mask"] for i in range(3)]  # the three slices of one volume
    assert all(torch.equal(first[0], m) for m in first)  # one mask per volume, like fastMRI val data
    assert torch.equal(ReconSliceDataset(out / "train", seed=7)[2]["mask"], first[2])
    fresh = ReconSliceDataset(out / "train", seed=None, accelerations=(4,), mask_type="random")
    draws = {fresh[0]["mask"].numpy().tobytes() for _ in range(6)}
    assert len(draws) > 1


def test_accelerations_mix_and_2d_masks(small_dataset):
    out, _ = small_dataset
    dataset = ReconSliceDataset(out, seed=0, accelerations=(4, 8))
    assert {dataset[i]["acceleration"] for i in range(len(dataset))} == {4, 8}
    vd = ReconSliceDataset(out / "val", seed=0, accelerations=(6,), mask_type="variable_density_2d")
    item = vd[0]
    assert item["mask"].shape == (1, 48, 48, 1)
    assert abs(48 * 48 / item["mask"].sum().item() - 6) < 0.2


def test_undersampled_files_use_their_own_mask(tmp_path):
    kspace = random_kspace(2, 3, 24, 32)
    columns = np.zeros(32, dtype=bool)
    columns[::4] = True
    columns[14:18] = True
    write_fastmri(tmp_path / "stored.h5", kspace * columns, mask=columns, target=rss_of(kspace))
    write_fastmri(tmp_path / "zeros.h5", kspace * columns, target=rss_of(kspace))  # no mask dataset
    pattern = np.random.default_rng(0).random((24, 32)) < 0.3
    write_fastmri(tmp_path / "twod.h5", kspace * pattern, mask=pattern[None], target=rss_of(kspace))
    dataset = ReconSliceDataset(tmp_path, seed=0)
    items = {dataset[i]["fname"]: dataset[i] for i in range(0, len(dataset), 2)}
    for name in ("stored.h5", "zeros.h5"):
        np.testing.assert_array_equal(items[name]["mask"][0, 0, :, 0].numpy() > 0, columns)
        assert items[name]["acceleration"] == round(32 / columns.sum())
    np.testing.assert_array_equal(items["twod.h5"]["mask"][0, :, :, 0].numpy() > 0, pattern)
    # use_stored_mask=False: new masks, but never marking samples that were not measured
    fresh = ReconSliceDataset(tmp_path / "stored.h5", seed=0, use_stored_mask=False, accelerations=(2,))
    mask = fresh[0]["mask"][0, 0, :, 0].numpy() > 0
    assert not (mask & ~columns).any()


def test_require_target(tmp_path):
    kspace = random_kspace(2, 2, 16, 16)
    write_fastmri(tmp_path / "with.h5", kspace, target=rss_of(kspace))
    write_fastmri(tmp_path / "without.h5", kspace)
    with pytest.warns(UserWarning, match="without.h5"):
        training = ReconSliceDataset(tmp_path)
    assert [p.name for p in training.files] == ["with.h5"]
    assert training.skipped[0][0].name == "without.h5"
    testing = ReconSliceDataset(tmp_path, require_target=False, seed=0)
    item = next(testing[i] for i in range(len(testing)) if testing[i]["fname"] == "without.h5")
    assert item["target"].ndim == 0 and item["max_value"] == 0.0


def test_masks_respect_acquired_window(tmp_path):
    kspace = random_kspace(1, 2, 16, 40)
    kspace[..., :6] = 0
    kspace[..., 34:] = 0
    write_fastmri(tmp_path / "padded.h5", kspace, target=rss_of(kspace), step1_limits=(0, 27, 14))
    dataset = ReconSliceDataset(tmp_path, seed=0, accelerations=(2,), mask_type="equispaced")
    mask = dataset[0]["mask"][0, 0, :, 0].numpy()
    assert not mask[:6].any() and not mask[34:].any() and mask[6:34].any()


def _two_shape_dataset(tmp_path):
    for index, (h, w, slices) in enumerate([(16, 16, 5), (16, 16, 4), (24, 20, 3), (24, 20, 2)]):
        kspace = random_kspace(slices, 2, h, w, seed=index)
        write_fastmri(tmp_path / f"v{index}.h5", kspace, target=rss_of(kspace))
    return ReconSliceDataset(tmp_path, seed=0)


def test_same_shape_batches_collate(tmp_path):
    dataset = _two_shape_dataset(tmp_path)
    sampler = same_shape_batches(dataset, batch_size=4, seed=0)
    loader = DataLoader(dataset, batch_sampler=sampler)
    seen = []
    for batch in loader:  # default collate works: one shape per batch
        assert batch["masked_kspace"].shape[0] <= 4
        seen.extend(zip(batch["fname"], batch["slice"].tolist(), strict=True))
    assert len(seen) == len(dataset) == 14 and len(set(seen)) == 14
    assert len(sampler) == 3 + 2  # ceil(9 / 4) + ceil(5 / 4)


def test_same_shape_batches_shard_over_ranks(tmp_path):
    dataset = _two_shape_dataset(tmp_path)
    world = 3
    samplers = [same_shape_batches(dataset, 2, seed=1, rank=r, world_size=world) for r in range(world)]
    lengths = {len(s) for s in samplers}
    assert len(lengths) == 1  # equal step counts on every rank (DDP)
    batches = [list(s) for s in samplers]
    assert all(len(b) == len(samplers[0]) for b in batches)
    covered = {i for rank_batches in batches for batch in rank_batches for i in batch}
    assert covered == set(range(len(dataset)))
    for rank_batches in batches:
        for batch in rank_batches:
            assert len({dataset.shape_key(i) for i in batch}) == 1
    epoch0 = list(samplers[0])
    samplers[0].set_epoch(1)
    assert list(samplers[0]) != epoch0
    samplers[0].set_epoch(0)
    assert list(samplers[0]) == epoch0
    with pytest.raises(ValueError):
        same_shape_batches(dataset, 2, rank=3, world_size=3)

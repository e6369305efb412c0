"""Training / evaluation datasets over fastMRI-layout files, and shape-grouped distributed batching.

``ReconSliceDataset`` indexes every slice of every ``*.h5`` under its roots after validating each
file's structure (bad files are skipped with a warning naming them and listed in ``.skipped``), and
returns items in fastMRI's VarNet conventions: masked k-space ``[C, H, W, 2]``, a mask that broadcasts
against it, the RSS target. Masks come from :func:`make_mask` (fastMRI's mask functions): fresh per
item when ``seed`` is None (training augmentation), or fixed per volume from ``(seed, file name)``
like fastMRI's validation transforms. Files that are already undersampled use their own pattern.
"""

from __future__ import annotations

import math
import random
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastmri.data.transforms import to_tensor
from torch.utils.data import Dataset

from .errors import ScanError
from .masks import MASK_TYPES, acceleration_of, center_width, make_mask, mask_seed, mask_to_torch
from .scan import ScanInfo, collapse_mask, infer_mask, inspect_scan, open_h5, read_dataset


@dataclass
class _Volume:
    info: ScanInfo
    zero_mask: bool  # undersampled with exact zeros but no stored mask: infer per slice
    mask_2d: bool  # items carry [1, H, W, 1] masks (else [1, 1, W, 1])


class ReconSliceDataset(Dataset):
    """One item per slice of every ``*.h5`` file in ``roots`` (searched recursively when a root is a
    directory; a root may also be a single file).

    Items (dict): ``masked_kspace`` float32 ``[C, H, W, 2]``; ``mask`` float32 ``[1, 1, W, 1]`` (1-D) or
    ``[1, H, W, 1]`` (2-D); ``num_low_frequencies`` int; ``target`` float32 ``[h, w]`` (a 0-d zero
    tensor when the file has none and ``require_target=False``); ``max_value`` float (attrs ``max``,
    else the volume's target maximum); ``fname`` str; ``slice`` int; ``acceleration`` int (rounded
    measured acceleration for stored masks); ``crop_size`` ``(h, w)`` (header recon matrix).
    """

    def __init__(
        self,
        roots: Path | str | Sequence[Path | str],
        accelerations: Sequence[int] = (4, 8),
        mask_type: str = "equispaced_fraction",
        seed: int | None = None,
        use_stored_mask: bool = True,
        require_target: bool = True,
        center_fractions: Sequence[float] | None = None,
        check_values: bool = False,
    ):
        """``check_values=True`` reads every volume's k-space once at indexing time to refuse NaN/Inf
        and infer zero-filled masks up front (slower); otherwise values are checked per item, where a
        non-finite slice raises ScanError naming file and slice."""
        if mask_type not in MASK_TYPES:
            raise ValueError(f"unknown mask type {mask_type!r}; choose from {', '.join(MASK_TYPES)}")
        if not accelerations:
            raise ValueError("at least one acceleration is needed")
        if center_fractions is not None and len(center_fractions) != len(accelerations):
            raise ValueError("center_fractions must pair with accelerations")
        self.accelerations = tuple(int(a) for a in accelerations)
        self.center_fractions = None if center_fractions is None else tuple(center_fractions)
        self.mask_type = mask_type
        self.seed = seed
        self.use_stored_mask = use_stored_mask
        self.require_target = require_target
        self.skipped: list[tuple[Path, str]] = []
        self.volumes: list[_Volume] = []
        self.samples: list[tuple[int, int]] = []  # (volume index, slice)
        roots = [roots] if isinstance(roots, str | Path) else list(roots)
        for path in _h5_files(roots):
            try:
                volume = self._index(path, check_values)
            except ScanError as err:
                self.skipped.append((path, err.problem))
                warnings.warn(f"skipping {err}", stacklevel=2)
                continue
            if volume is None:
                continue
            self.volumes.append(volume)
            self.samples.extend((len(self.volumes) - 1, s) for s in range(volume.info.num_slices))

    def _index(self, path: Path, check_values: bool) -> _Volume | None:
        info = inspect_scan(path, read_target=False)  # targets are checked per item; attrs give max
        if info.target_key is not None and info.target_max is None:
            info = inspect_scan(path, read_target=True)  # no 'max' attribute: read it from the target
        if self.require_target and info.target_key is None:
            self.skipped.append((path, "no target (reconstruction_rss / reconstruction_esc)"))
            warnings.warn(f"skipping {path}: no target and require_target=True", stacklevel=3)
            return None
        zero_mask = False
        inferred = None
        if info.mask is None:
            with open_h5(path) as handle:
                dataset = handle["kspace"]
                if check_values:
                    kspace = read_dataset(path, dataset)
                    if not np.isfinite(kspace).all():
                        raise ScanError(path, "k-space contains NaN/Inf values")
                else:
                    kspace = read_dataset(path, dataset, info.num_slices // 2)[None]
            kspace = kspace if kspace.ndim == 4 else kspace[:, None]
            inferred = infer_mask(kspace, info.header)
            zero_mask = inferred is not None
        measured = info.mask if info.mask is not None else inferred
        measured_2d = measured is not None and measured.shape[-2] > 1
        generated_2d = self.mask_type == "variable_density_2d"
        if measured is not None and self.use_stored_mask:
            mask_2d = measured_2d
        else:
            mask_2d = generated_2d or measured_2d
        return _Volume(info, zero_mask, mask_2d)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def files(self) -> list[Path]:
        return [v.info.path for v in self.volumes]

    def shape_key(self, index: int) -> tuple:
        """What must agree for items to stack in one batch: k-space, mask layout and target shapes."""
        volume = self.volumes[self.samples[index][0]]
        info = volume.info
        return (info.num_coils, *info.shape, volume.mask_2d, info.target_shape)

    def _choose(self, fname: str) -> tuple[int, float | None, int | None]:
        """(acceleration, centre fraction, mask seed) for a slice of ``fname``."""
        if self.seed is None:
            choice = int(torch.randint(len(self.accelerations), ()).item())
            seed = None
        else:
            rng = np.random.RandomState(mask_seed(self.seed, fname))
            choice = int(rng.randint(len(self.accelerations)))
            seed = self.seed
        fraction = None if self.center_fractions is None else self.center_fractions[choice]
        return self.accelerations[choice], fraction, seed

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume_index, slice_index = self.samples[index]
        volume = self.volumes[volume_index]
        info = volume.info
        with open_h5(info.path) as handle:
            kspace = read_dataset(info.path, handle["kspace"], slice_index)
            target = None
            if info.target_key is not None:
                stored_target = handle[info.target_key]
                selection = slice_index if stored_target.ndim == 3 else ()
                target = read_dataset(info.path, stored_target, selection)
        kspace = np.asarray(kspace, dtype=np.complex64)
        kspace = kspace[None] if kspace.ndim == 2 else kspace  # single-coil -> one coil
        if not np.isfinite(kspace).all():
            raise ScanError(info.path, f"k-space of slice {slice_index} contains NaN/Inf values")
        height, width = kspace.shape[-2:]
        fname = info.path.name

        stored = None
        if info.mask is not None:
            stored = info.mask[slice_index] if info.mask.ndim == 3 else info.mask
        elif volume.zero_mask:
            inferred = infer_mask(kspace[None], info.header)
            stored = collapse_mask(inferred) if inferred is not None else None
        if stored is not None and self.use_stored_mask:
            mask = stored
            acceleration = int(round(acceleration_of(mask, (height, width))))
            num_low = center_width(mask)
        else:
            acceleration, fraction, seed = self._choose(fname)
            mask, num_low = make_mask((height, width), acceleration, self.mask_type, seed, fraction, fname)
            window = info.header.acquired_columns if info.header is not None else None
            if (
                window is not None
                and (window[0] > 0 or window[1] < width)
                and 0 <= window[0] < window[1] <= width
            ):
                mask = mask.copy()
                mask[..., : window[0]] = False
                mask[..., window[1] :] = False
            if stored is not None:  # cannot invent data: keep only samples that were measured
                mask = np.broadcast_to(mask, (height, width)) & np.broadcast_to(stored, (height, width))
                mask = collapse_mask(mask)
        if volume.mask_2d and mask.shape[0] == 1:  # one layout per volume, so batches stack
            mask = np.broadcast_to(mask, (height, width))
        mask_t = mask_to_torch(mask)
        masked = to_tensor(kspace) * mask_t + 0.0

        if target is not None:
            if not np.isfinite(target).all():
                raise ScanError(info.path, f"target of slice {slice_index} contains NaN/Inf values")
            target_t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32))
            max_value = float(info.target_max) if info.target_max is not None else float(target.max())
        else:
            target_t = torch.tensor(0.0)
            max_value = 0.0
        crop = (
            info.header.recon_size[:2]
            if info.header is not None
            else (info.target_shape if info.target_shape is not None else (height, width))
        )
        return {
            "masked_kspace": masked.float(),
            "mask": mask_t,
            "num_low_frequencies": int(num_low),
            "target": target_t,
            "max_value": max_value,
            "fname": fname,
            "slice": int(slice_index),
            "acceleration": int(acceleration),
            "crop_size": (int(crop[0]), int(crop[1])),
        }


def _h5_files(roots: Sequence[Path | str]) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_dir():
            files.extend(sorted(p for p in root.rglob("*.h5") if p.is_file()))
        elif root.exists():
            files.append(root)
        else:
            raise FileNotFoundError(f"dataset root {root} does not exist")
    return files


class SameShapeBatchSampler:
    """Batches of indices whose items share one shape key, sharded over ``world_size`` ranks.

    Every epoch the indices of each shape group are shuffled (seeded by ``seed + epoch``, identical on
    all ranks), cut into batches, and the batches shuffled; rank ``r`` takes batches ``r, r + world,
    ...``. Ranks pad with batches from the start of the list so that all of them have the same
    ``len()`` (DistributedDataParallel needs equal step counts). ``drop_last`` drops incomplete
    batches instead of keeping them short.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = drop_last
        self.epoch = 0
        key_of = getattr(dataset, "shape_key", None)
        groups: dict[Any, list[int]] = defaultdict(list)
        for index in range(len(dataset)):
            groups[key_of(index) if key_of is not None else _item_key(dataset[index])].append(index)
        self.groups = [groups[key] for key in sorted(groups, key=repr)]
        if drop_last:
            self.num_batches = sum(len(g) // self.batch_size for g in self.groups)
        else:
            self.num_batches = sum(math.ceil(len(g) / self.batch_size) for g in self.groups)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_batches(self) -> list[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        batches = []
        for group in self.groups:
            order = list(group)
            if self.shuffle:
                rng.shuffle(order)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._all_batches()
        if not batches:
            return iter(())
        per_rank = len(self)
        total = per_rank * self.world_size
        padded = batches + [batches[i % len(batches)] for i in range(total - len(batches))]
        return iter(padded[self.rank : total : self.world_size])

    def __len__(self) -> int:
        return math.ceil(self.num_batches / self.world_size) if self.num_batches else 0


def _item_key(item: Any) -> tuple:
    if isinstance(item, dict):
        return tuple((k, tuple(v.shape)) for k, v in sorted(item.items()) if isinstance(v, torch.Tensor))
    return (tuple(getattr(item, "shape", ())),)


def same_shape_batches(
    dataset: Any,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> SameShapeBatchSampler:
    """A batch sampler (``DataLoader(dataset, batch_sampler=...)``) whose batches hold items of one
    k-space shape, sharded for DistributedDataParallel; call ``set_epoch(epoch)`` every epoch."""
    return SameShapeBatchSampler(dataset, batch_size, shuffle, seed, rank, world_size, drop_last)


def volume_slices(dataset: ReconSliceDataset) -> dict[Path, list[int]]:
    """Dataset indices per volume file, in slice order (for volume-level evaluation / stitching)."""
    by_volume: dict[Path, list[int]] = defaultdict(list)
    for index, (volume_index, _) in enumerate(dataset.samples):
        by_volume[dataset.volumes[volume_index].info.path].append(index)
    return dict(by_volume)

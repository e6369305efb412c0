"""Baselines that Nirvana-MRI is benchmarked against.

- :mod:`nirvana_mri.baselines.classical`: zero-filled, SENSE and L1-wavelet compressed sensing, one slice
  at a time on numpy arrays (no training);
- :mod:`nirvana_mri.baselines.learned`: fastMRI's U-Net and E2E-VarNet behind the learned-model interface
  of :mod:`nirvana_mri.recon_models`.

The submodules are imported on demand (``learned`` pulls in torch models, ``classical`` sigpy).
"""

"""benchmarks/refine_probe.py: the probe runs on a tiny model and volume, and the summary groups by SNR."""

from __future__ import annotations

import importlib.util
import json

import pytest

from nirvana_mri.backbone import preset
from nirvana_mri.codecs import NirvanaMRI

from .conftest_paths import REPO
from .synth import write_fastmri_volume


def _script():
    spec = importlib.util.spec_from_file_location("refine_probe_script", REPO / "benchmarks" / "refine_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_probe_volume_and_summary(tmp_path):
    probe = _script()
    path = tmp_path / "val_snr300" / "vol.h5"
    path.parent.mkdir()
    write_fastmri_volume(path, slices=2, h=64, w=64, coils=4)
    model = NirvanaMRI(backbone="random", backbone_config=preset("tiny", num_hidden_layers=1).to_dict(),
                       num_cascades=1, codec_channels=4, sens_chans=2, sens_pools=2).eval()
    row = probe.probe_volume(model, path, 4, [1e-3, 1e-2], [1, 3])
    configs = [k for k in row if k.startswith("learned_") and not k.endswith("_psnr")]
    assert sorted(configs) == ["learned_l0.001_n1", "learned_l0.001_n3", "learned_l0.01_n1", "learned_l0.01_n3"]
    assert 0 < row["net"] <= 1 and all(0 < row[c] <= 1 for c in configs)
    assert row["sigma_rel"] > 0
    # more iterations change the image (the refinement really runs)
    assert row["learned_l0.01_n1"] != row["learned_l0.01_n3"]
    other = dict(row, file=str(tmp_path / "val_snr30" / "vol.h5"), net=0.0)
    data, md = probe.summarize([row, other], "cmd")
    assert list(data["by_snr"]) == ["30", "300"]
    assert data["by_snr"]["30"]["learned_l0.01_n3"]["ssim_better_volumes"] == 1
    assert "| 300 | 1 |" in md and "cmd" in md
    json.dumps(data)


def test_missing_or_bad_input_is_a_one_line_error(tmp_path, capsys):
    probe = _script()
    with pytest.raises(SystemExit) as stop:
        probe.main(["run", str(tmp_path / "absent.h5")])
    assert stop.value.code == 2 and "no such file" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SystemExit):
        probe.main(["summarize", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "s")])
    assert "no probe lines" in capsys.readouterr().err

"""The pretraining loop on CPU: loss falls, exact resume, bits per byte, generation, CLI errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nirvana_mri.backbone import NirvanaForCausalLM, corpus, pretrain
from nirvana_mri.backbone.generate import generate_bytes
from nirvana_mri.cli import main

TINY = dict(
    vocab_size=512,
    hidden_size=64,
    num_heads=2,
    num_hidden_layers=3,
    concept_dim=16,
    logit_dim=8,
    intermediate_size=128,
    kernel_backend="torch",
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    words = ["the", "magnet", "field", "spin", "echo", "signal", "image", "coil", "slice", "phase"]
    docs = [" ".join(rng.choice(words, size=400)) + ".\n" for _ in range(20)]
    sep = bytes([corpus.SEPARATOR])
    (folder / "train.bin").write_bytes(sep.join(d.encode() for d in docs[:16]))
    (folder / "heldout_toy.bin").write_bytes(sep.join(d.encode() for d in docs[16:]))
    return folder


def _cfg(out: Path, data: Path, **kw) -> pretrain.TrainConfig:
    values = dict(
        out=str(out),
        data=str(data),
        model=dict(TINY),
        context=32,
        batch_size=4,
        max_steps=4,
        warmup_steps=2,
        eval_every=0,
        eval_bytes=512,
        checkpoint_every=0,
        log_every=1,
        lr=3e-3,
        kernel_backend="torch",
        device="cpu",
    )
    values.update(kw)
    return pretrain.TrainConfig(**values)


def test_loss_decreases_on_a_repeated_batch():
    torch.manual_seed(0)
    model = NirvanaForCausalLM(pretrain.NirvanaConfig(**TINY))
    ids = torch.from_numpy(corpus.to_tokens(np.frombuffer(b"spin echo signal " * 4, dtype=np.uint8)))[None]
    optimizer = torch.optim.AdamW(pretrain.parameter_groups(model, 0.1), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[2] < losses[1] < losses[0]


def test_training_runs_and_writes_log_checkpoint_and_export(tmp_path, data_dir):
    cfg = _cfg(tmp_path / "run", data_dir, max_steps=3, eval_every=2)
    summary = pretrain.train(cfg)
    assert summary["step"] == 3 and summary["tokens_seen"] == 3 * 4 * 32
    assert set(summary["eval_bits_per_byte"]) == {"toy"}
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any("eval_bits_per_byte" in r for r in records) and "summary" in records[-1]
    folder = pretrain.export_final(cfg, summary)
    model = NirvanaForCausalLM.from_pretrained(folder)
    assert model.config.kernel_backend == "auto" and model.config.eos_token_id == corpus.EOS
    assert next(iter(load_file(str(folder / "model.safetensors")).values())).dtype == torch.bfloat16
    assert "bits per byte" in (folder / "README.md").read_text()


def test_resume_continues_exactly(tmp_path, data_dir):
    straight = pretrain.train(_cfg(tmp_path / "a", data_dir, max_steps=4))
    first = pretrain.train(_cfg(tmp_path / "b", data_dir, max_steps=4, stop_at_step=2))  # interrupted
    assert first["step"] == 2
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 2
    resumed = pretrain.train(_cfg(tmp_path / "b", data_dir, max_steps=4), resume=True)
    assert resumed["step"] == 4 and resumed["tokens_seen"] == straight["tokens_seen"]
    a = load_file(str(tmp_path / "a" / "checkpoint" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)
    assert resumed["final_loss"] == straight["final_loss"]


def test_schedule_warmup_then_cosine():
    cfg = _cfg(Path("."), Path("."), lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert pretrain.learning_rate(0, cfg) == pytest.approx(0.1)
    assert pretrain.learning_rate(9, cfg) == pytest.approx(1.0)
    assert pretrain.learning_rate(60, cfg) == pytest.approx(0.55)
    assert pretrain.learning_rate(110, cfg) == pytest.approx(0.1)


def test_no_weight_decay_on_norms_and_memory_parameters():
    model = NirvanaForCausalLM(pretrain.NirvanaConfig(**TINY))
    decay, no_decay = pretrain.parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert any(n.endswith("A_log") for n in no_decay_names) and any(
        n.endswith("dt_bias") for n in no_decay_names
    )
    assert any("norm" in n for n in no_decay_names)
    assert all(p.ndim >= 2 for p in decay["params"])
    assert all("norm" not in names[id(p)] for p in decay["params"])


class _Fixed(torch.nn.Module):
    """A "model" whose next-byte distribution is fixed: P(a)=1/2, P(b)=1/4, P(c)=1/4."""

    def __init__(self):
        super().__init__()
        logits = torch.full((512,), -1e9)
        logits[ord("a")], logits[ord("b")], logits[ord("c")] = math.log(0.5), math.log(0.25), math.log(0.25)
        self.register_buffer("row", logits)

    def forward(self, input_ids):
        return type("Out", (), {"logits": self.row.expand(*input_ids.shape, 512)})()


def test_bits_per_byte_on_a_known_distribution():
    data = np.frombuffer(b"abacabac" * 20, dtype=np.uint8)
    sep = np.concatenate([data[:50], [corpus.SEPARATOR], data[50:]]).astype(np.uint8)
    for context in (7, 16, 1000):
        result = pretrain.evaluate_bits_per_byte(_Fixed(), sep, context=context, batch_size=3)
        targets = np.concatenate([data[1:50], data[50:]])  # every byte but the first, separator excluded
        expected = np.mean([1.0 if t == ord("a") else 2.0 for t in targets])
        assert result["bytes"] == len(targets)
        assert result["bits_per_byte"] == pytest.approx(expected)


def test_generation_returns_bytes():
    model = NirvanaForCausalLM(pretrain.NirvanaConfig(**TINY))
    out = generate_bytes(model, "The coil ", max_new_bytes=12, temperature=0.9, top_k=20, seed=1)
    assert isinstance(out, bytes) and 0 < len(out) <= 12
    again = generate_bytes(model, "The coil ", max_new_bytes=12, temperature=0.9, top_k=20, seed=1)
    assert out == again
    greedy = generate_bytes(model, b"x", max_new_bytes=5, temperature=0, stop_at_eos=False)
    assert len(greedy) == 5


def test_cli_errors_clearly_on_a_missing_text_file(tmp_path, capsys):
    status = main(["pretrain", "--text", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")])
    assert status == 1
    err = capsys.readouterr().err
    assert "nope.txt" in err and "not found" in err and "Traceback" not in err


def test_cli_trains_on_text_files(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text(
        "\n\n".join(f"Paragraph {i}: the spin echo forms an image of the slice." for i in range(400))
    )
    out = tmp_path / "o"
    status = main(
        [
            "pretrain",
            "--text",
            str(text),
            "--config",
            "tiny",
            "--out",
            str(out),
            "--context",
            "32",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--kernels",
            "torch",
            "--device",
            "cpu",
            "--eval-bytes",
            "256",
            "--summary-json",
            str(tmp_path / "s.json"),
        ]
    )
    assert status == 0
    assert (out / "data" / "train.bin").exists() and (out / "data" / "heldout_text.bin").exists()
    assert (out / "final" / "model.safetensors").exists() and (out / "final" / "README.md").exists()
    assert json.loads((tmp_path / "s.json").read_text())["step"] == 2

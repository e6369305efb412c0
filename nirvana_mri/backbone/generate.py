"""Sampling from a byte-level ``NirvanaForCausalLM``: temperature / top-k, bytes in, text out."""

from __future__ import annotations

import torch

from . import corpus


@torch.no_grad()
def generate_bytes(
    model: torch.nn.Module,
    prompt: str | bytes,
    max_new_bytes: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 40,
    seed: int | None = 0,
    context: int = 1024,
    stop_at_eos: bool = True,
) -> bytes:
    """Continue ``prompt`` by sampling one byte at a time (the model is run on the whole context each
    step: no cache, fine for a few hundred bytes). ``temperature == 0`` is greedy. Returns only the new
    bytes; special tokens are never emitted (EOS ends the sample when ``stop_at_eos``)."""
    data = prompt.encode("utf-8") if isinstance(prompt, str) else bytes(prompt)
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu")
    if seed is not None:
        generator.manual_seed(seed)
    ids = list(data) if data else [corpus.EOS]
    new: list[int] = []
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_bytes):
            window = torch.tensor([ids[-context:]], dtype=torch.long, device=device)
            logits = model(input_ids=window).logits[0, -1].float().cpu()
            logits[corpus.PAD + 1 :] = float("-inf")  # unused vocabulary
            logits[corpus.BOS] = logits[corpus.PAD] = float("-inf")
            if not stop_at_eos:
                logits[corpus.EOS] = float("-inf")
            if temperature <= 0:
                token = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits[logits < kth] = float("-inf")
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if token == corpus.EOS:
                break
            new.append(token)
            ids.append(token)
    finally:
        model.train(was_training)
    return bytes(new)


def generate_text(model: torch.nn.Module, prompt: str, **kwargs) -> str:
    """``generate_bytes`` decoded as UTF-8 (invalid sequences replaced)."""
    return generate_bytes(model, prompt, **kwargs).decode("utf-8", errors="replace")

"""The published implementation's compute path, run in this process for side-by-side benchmarks.

The published code cannot be carried, so this is a faithful stand-in built from our own model:
- the gated delta rule through flash-linear-attention's ``chunk_gated_delta_rule``
  (``use_qk_l2norm_in_kernel=True``), as the published layers call it;
- the Trigger in the published **einsum form**, which builds the per-token [C, C] weight
  ``einsum('iol,bsl->bsio', weight_linear, logits)`` (B*T*C^2 floats a layer) and differentiates
  through autograd;
- attention through torch SDPA (as measured for the published reference figures);
- with ``layers=True`` (the default), the surrounding layers the published code takes from fla:
  ``causal_conv1d`` (SiLU) for the short convolutions, the fused ``rms_norm`` and ``rms_norm_gated``
  (swish gate) kernels, and ``swiglu`` for the MLP's gate.

``published_backbone()`` patches these into ``NirvanaModel`` (``with published_backbone(): model(x)``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import types

import torch

from nirvana_mri.backbone.kernels.trigger_reference import LN_EPS, TriggerState, TriggerWeights

os.environ.setdefault("FLA_DISABLE_BACKEND_DISPATCH", "1")


def import_fla():
    """``(chunk_gated_delta_rule, version)`` from the installed fla, or ``(None, reason)``.

    fla 0.2.2's package ``__init__`` imports its model zoo (and so transformers); if that fails, the
    ops are imported under a bare package stub, which skips the model zoo.
    """
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except Exception as err:  # noqa: BLE001 - any import failure means "no fla row"
        first = f"{type(err).__name__}: {err}"
        for name in [m for m in sys.modules if m == "fla" or m.startswith("fla.")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("fla")
        if spec is None or not spec.submodule_search_locations:
            return None, f"fla not installed ({first})"
        stub = types.ModuleType("fla")
        stub.__path__ = list(spec.submodule_search_locations)
        sys.modules["fla"] = stub
        try:
            chunk_gated_delta_rule = importlib.import_module(
                "fla.ops.gated_delta_rule"
            ).chunk_gated_delta_rule
        except Exception as err2:  # noqa: BLE001
            return None, f"fla import failed: {first}; stub import: {type(err2).__name__}: {err2}"
    return chunk_gated_delta_rule, fla_version()


def fla_version() -> str:
    from importlib import metadata

    for dist in ("fla-core", "flash-linear-attention"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "fla (unknown version)"


def fla_gated_delta_rule(
    q,
    k,
    v,
    g,
    beta,
    scale=None,
    initial_state=None,
    output_final_state=False,
    use_qk_l2norm=True,
    backend="auto",
):
    """Drop-in for ``kernels.gated_delta_rule`` that calls fla."""
    fn, info = import_fla()
    if fn is None:
        raise RuntimeError(info)
    return fn(
        q,
        k,
        v,
        g,
        beta,
        scale=scale,
        initial_state=initial_state,
        output_final_state=output_final_state,
        use_qk_l2norm_in_kernel=use_qk_l2norm,
    )


def _forward_einsum(x, weights: TriggerWeights, state: TriggerState):
    W = torch.einsum("iol,bsl->bsio", weights.weight_linear, state.weight_linear)  # [B, T, C, C]
    z = torch.einsum("bsi,bsio->bso", x, W) + state.bias_linear @ weights.bias_linear.T
    mean = z.mean(-1, keepdim=True)
    std = torch.sqrt(z.var(-1, keepdim=True, unbiased=False) + LN_EPS)
    z_hat = (z - mean) / std
    w_ln = state.weight_ln @ weights.weight_ln.T
    return w_ln * z_hat + state.bias_ln @ weights.bias_ln.T + x, z_hat, std, w_ln


def trigger_step_published(
    q,
    k,
    v,
    weights: TriggerWeights,
    state: TriggerState,
    lr_linear=1e-2,
    lr_ln=1e-2,
    learn=True,
    backend="auto",
):
    """The published einsum form of one Trigger step (learn + predict), differentiated by autograd."""
    if learn:
        out, z_hat, std, w_ln = _forward_einsum(k, weights, state)
        error = out - v
        grad = w_ln * error / std
        outer = torch.einsum("bsi,bso->bsio", k, grad)  # [B, T, C, C]
        state = TriggerState(
            weight_linear=state.weight_linear
            - lr_linear * torch.einsum("iol,bsio->bsl", weights.weight_linear, outer),
            weight_ln=state.weight_ln - lr_ln * (error * z_hat) @ weights.weight_ln,
            bias_linear=state.bias_linear - lr_linear * grad @ weights.bias_linear,
            bias_ln=state.bias_ln - lr_ln * error @ weights.bias_ln,
        )
    out, *_ = _forward_einsum(q, weights, state)
    return out, state


@contextlib.contextmanager
def published_backbone(delta_rule: bool = True, trigger: bool = True, layers: bool = True):
    """Within the block, ``NirvanaModel`` runs fla's delta rule, the einsum-form Trigger and (``layers``)
    fla's convolution, norm and SwiGLU kernels."""
    updater = importlib.import_module("nirvana_mri.backbone.updater")
    trig = importlib.import_module("nirvana_mri.backbone.trigger")
    saved = (updater.gated_delta_rule, trig.trigger_step)
    layer_forwards = fla_layer_forwards() if layers else {}
    saved_forwards = {cls: cls.forward for cls in layer_forwards}
    try:
        if delta_rule:
            updater.gated_delta_rule = fla_gated_delta_rule
        if trigger:
            trig.trigger_step = trigger_step_published
        for cls, forward in layer_forwards.items():
            cls.forward = forward
        yield
    finally:
        updater.gated_delta_rule, trig.trigger_step = saved
        for cls, forward in saved_forwards.items():
            cls.forward = forward


def fla_layer_forwards() -> dict:
    """Our layer classes -> forwards through the fla 0.2.2 kernels the published layers use (the same
    parameters: conv weight [D, 1, K], norm weights, one fused gate/up projection)."""
    if import_fla()[0] is None:
        raise RuntimeError("fla is not installed: no published layer kernels")
    conv = importlib.import_module("fla.modules.convolution").causal_conv1d
    rms_norm = importlib.import_module("fla.modules.layernorm").rms_norm
    rms_norm_gated = importlib.import_module("fla.modules.fused_norm_gate").rms_norm_gated
    swiglu = importlib.import_module("fla.modules.activations").swiglu
    from nirvana_mri.backbone import layers

    def swiglu_forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(swiglu(gate, up))

    return {
        layers.ShortConvolution: lambda self, x: conv(x, self.weight[:, 0].to(x.dtype), None, None, "silu"),
        layers.RMSNorm: lambda self, x: rms_norm(x, self.weight, None, eps=self.eps),
        layers.GatedRMSNorm: lambda self, x, gate: rms_norm_gated(x, gate, self.weight, None, "swish",
                                                                  eps=self.eps),
        layers.SwiGLU: swiglu_forward,
    }


def check_layers(preset_name: str = "1024x12", batch: int = 2, length: int = 1600) -> dict:
    """Our backbone vs the same backbone with only fla's layer kernels patched in (bf16, GPU): the
    relative difference of the output, to show the stand-in's layers compute the same function."""
    from nirvana_mri.backbone.config import preset
    from nirvana_mri.backbone.model import NirvanaModel

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = NirvanaModel(preset(preset_name)).to(torch.bfloat16).eval()
        x = (torch.randn(batch, length, model.config.hidden_size) * 0.5).to(torch.bfloat16)
    with torch.no_grad():
        ours = model(inputs_embeds=x).last_hidden_state.float()
        with published_backbone(delta_rule=False, trigger=False):
            theirs = model(inputs_embeds=x).last_hidden_state.float()
    rel = float((ours - theirs).norm() / ours.norm())
    return {"preset": preset_name, "batch": batch, "length": length, "rel_diff_bf16": rel}


if __name__ == "__main__":
    import json

    print(json.dumps(check_layers()))

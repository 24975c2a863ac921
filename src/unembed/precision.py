"""Inference precision of a loaded Denoiser: fp32 (as trained), bf16 weights, or int8 linears.

On a CPU a decoder pass at batch 1 is bound by reading the weights (about 110 MB in fp32 for
the shipped model, the 30,522 x 384 vocabulary projection nearly half of it), so smaller weights
are faster passes:

* ``fp32``: the weights as trained.
* ``bf16``: every weight in bfloat16 (half the bytes); activations bf16, logits compared in fp32.
* ``int8``: every linear layer of the passes and the tied vocabulary projection as dynamically
  quantised int8 (weights per output channel, inputs per row: ``RowScaledLinear``); embeddings,
  norms and the length head stay fp32. Uses torch's ``quantize_dynamic`` (fbgemm/x86 kernels).
  Where the CPU has AVX-512 VNNI or AVX2, the arg-max path projects onto the vocabulary and
  reduces in one int8 kernel instead (``kernels.Int8Head``, also one scale per hidden row).

* ``auto`` (the default): int8 on a CPU whose torch has the int8 kernels, else fp32.

A row's result does not depend on the other rows of its batch in fp32 and int8: each token's
activations are quantised with their own scale and the integer products are exact, so the same
vector decodes to the same text alone or in a batch of any size (``tests/test_precision.py``).
bf16 kernels may block their sums differently by batch size, so a near-tie between two tokens
can go either way there; it is not the default on any device.

What each costs in quality is measured on 1,000 validation sentences (``docs/speed.md``): none
that the measurement can tell from noise.
Training always uses fp32 weights; precision is a property of a loaded model for decoding.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings

import torch
from torch import nn

from . import kernels
from .model import needs_key_mask
from .settings import PRECISIONS, Runtime

log = logging.getLogger(__name__)


class _QuantHead(nn.Module):
    """The tied vocabulary projection as a separate int8 linear (weight = token embeddings)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        self.linear.weight.data.copy_(weight)
        self.linear.bias.data.copy_(bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden)


class RowScaledLinear(nn.Module):
    """A dynamically quantised int8 linear whose inputs are quantised one row (token) at a time.

    torch's dynamic int8 linear quantises its whole input with one scale, the batch's largest
    value, so a row's rounding, and at a near-tie its token, depended on its neighbours. Here each
    row is divided by its own largest magnitude (so it spans at most [-1, 1]), one guard row
    holding exactly 1 and -1 is appended so that the tensor's range, and with it the one scale,
    is [-1, 1] whatever the batch, and the products are multiplied back by the row's magnitude
    before the bias is added. The integer products are exact, so row i's output is the same in
    any batch. It also rounds a small row more finely than one scale for the batch did.
    """

    def __init__(self, quantized: nn.Module):
        super().__init__()
        weight, bias = quantized._weight_bias()
        if weight.shape[1] < 2:
            raise ValueError("a row-scaled linear needs at least two inputs (the guard row holds 1 and -1)")
        quantized.set_weight_bias(weight, None)
        self.inner = quantized
        self.register_buffer("bias", torch.zeros(weight.shape[0]) if bias is None else bias.detach().clone())
        guard = torch.zeros(1, weight.shape[1])
        guard[0, 0], guard[0, 1] = 1.0, -1.0
        self.register_buffer("guard", guard)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        # a row of zeros keeps magnitude 1e-30: it quantises to zeros and its output is the bias
        mag = rows.abs().amax(-1, keepdim=True).clamp_min(1e-30)  # 5x faster than an inf-norm here
        out = self.inner(torch.cat([rows / mag, self.guard]))[:-1]
        return torch.addcmul(self.bias, out, mag).reshape(x.shape[:-1] + (out.shape[-1],))


def row_scaled(model: nn.Module) -> nn.Module:
    """Replaces every dynamically quantised linear of ``model`` by a ``RowScaledLinear``."""
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, dynamic):
                setattr(parent, name, RowScaledLinear(child))
    return model


def fuse_ada(model: nn.Module) -> nn.Linear:
    """Every block's AdaLN projection and ``ada_out`` as one linear (rows in block order, then
    ``ada_out``'s), and removes the separate ones from ``model`` (a copy made for inference).

    The fused product gives each output what its own linear gave: with int8 the weights are
    quantised per output row and the input, the same c for all of them, gets the same scale.
    """
    parts = [block.ada for block in model.blocks] + [model.ada_out]
    w = parts[0].weight
    fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), device=w.device, dtype=w.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([p.weight for p in parts]))
        fused.bias.copy_(torch.cat([p.bias for p in parts]))
    for block in model.blocks:
        del block.ada
    del model.ada_out
    return fused


class TracedPasses:
    """Decoder passes through TorchScript graphs of ``Denoiser.forward`` (traced, then frozen).

    At batch 1 a pass is about 900 small torch operations, and calling them one by one from
    Python costs as much as the int8 arithmetic; a frozen graph runs the same operations without
    the interpreter. Two graphs are traced on first use, from the first inputs of each kind:
    every row sees all positions it is given (no key mask), or rows differ in length (a key mask
    from ``visible``); batch size and width stay free. The outputs are those of the eager forward
    (``tests/test_precision.py``). If tracing fails, passes stay eager (logged once).
    """

    def __init__(self) -> None:
        self.graphs: dict[bool, torch.jit.ScriptModule] = {}
        self.failed = False
        self.lock = threading.Lock()

    def __call__(self, model: nn.Module, xt, t, cond, visible):
        n = xt.shape[1]
        masked = needs_key_mask(visible, n)
        vis = visible if visible is not None else torch.full((xt.shape[0],), n - 1, device=xt.device)
        graph = self.graphs.get(masked)
        if graph is None and not self.failed:
            with self.lock:
                graph = self.graphs.get(masked)
                if graph is None and not self.failed:
                    graph = self._trace(model, (xt, t, cond, vis))
                    if graph is not None:
                        self.graphs[masked] = graph
        if graph is None:
            return model.eager_forward(xt, t, cond, visible)
        return graph(xt, t, cond, vis)

    @torch.inference_mode()
    def warm_up(self, model: nn.Module) -> None:
        """Trace both graphs now (0.7 s for both on the shipped model) instead of on the first passes."""
        cfg, dev = model.cfg, model.tok.weight.device
        for visible in (torch.tensor([3, 3], device=dev), torch.tensor([3, 1], device=dev)):
            ids = torch.full((2, 4), cfg.mask_id, device=dev)
            self(model, ids, torch.ones(2, device=dev), torch.zeros(2, cfg.cond_dim, device=dev), visible)

    def _trace(self, model: nn.Module, example: tuple) -> torch.jit.ScriptModule | None:
        try:
            with warnings.catch_warnings():  # tracer and TorchScript deprecation notices
                warnings.simplefilter("ignore")
                return torch.jit.freeze(torch.jit.trace(model, example, check_trace=False).eval())
        except Exception as e:  # noqa: BLE001 - any failure leaves the eager passes, which are correct
            self.failed = True
            log.warning("decoding without TorchScript graphs (tracing failed: %s)", str(e).splitlines()[0][:200])
            return None

    def __deepcopy__(self, memo):  # a copy traces its own graphs (they hold the weights as constants)
        return TracedPasses()


def int8_available() -> bool:
    engines = torch.backends.quantized.supported_engines
    return "x86" in engines or "fbgemm" in engines


def for_inference(
    model: nn.Module, precision: str = "fp32", fuse: bool = True, trace: bool | None = None, row_scales: bool = True
) -> nn.Module:
    """A copy of ``model`` (eval mode) in ``precision``; ``fp32`` returns the model itself.

    With int8 and ``fuse`` (the default), the AdaLN projections of all blocks and ``ada_out`` run
    as one int8 product per pass (``fuse_ada``: the same outputs, fewer calls), and with ``trace``
    (default: on unless the environment sets ``UNEMBED_TRACE=0``) the passes run as TorchScript
    graphs (``TracedPasses``: the same outputs without Python's per-operation cost).
    ``row_scales`` (int8; default on) quantises each row's input with its own scale
    (``RowScaledLinear``), so that a row's result does not depend on its batch; off, torch's one
    scale per batch (kept for benchmarks that measure what the independence costs).

    The returned model keeps the Denoiser interface (forward, logits, length_logits, cfg), so
    every decoding path uses it unchanged. Its ``precision`` attribute says what it is.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if getattr(model, "precision", "fp32") != "fp32":
        raise ValueError(f"this model is already a {model.precision} copy; convert the fp32 model it was made from")
    on_cpu = next(model.parameters()).device.type == "cpu"
    if precision == "auto":
        precision = "int8" if on_cpu and int8_available() else "fp32"
    model.eval()
    if precision == "fp32":
        model.precision = "fp32"
        return model
    if precision == "int8" and not on_cpu:
        raise ValueError("precision int8 runs on the CPU only; use bf16 on a GPU")
    out = copy.deepcopy(model)
    if precision == "bf16":
        out = out.to(torch.bfloat16)
    else:
        if not int8_available():
            raise ValueError("this torch build has no int8 CPU kernels (fbgemm/x86); use bf16 or fp32")
        # The tied head becomes its own linear so that it is quantised too (the embedding table
        # that feeds the input stays fp32).
        out.head_override = _QuantHead(out.tok.weight.data + 0.0, out.head_bias.data + out.never)
        if fuse:
            out.ada_fused = fuse_ada(out)
        with warnings.catch_warnings():  # torch marks its quantised tensor types as deprecated
            warnings.simplefilter("ignore")
            qc = torch.ao.quantization.per_channel_dynamic_qconfig
            # The length head (0.4 MB, run once per inversion) stays fp32: the committed length is
            # then the fp32 model's, and only the passes are approximated.
            spec = {name: qc for name in ("blocks", "cond_mlp", "time_mlp", "ada_out", "ada_fused", "head_override")}
            out = torch.ao.quantization.quantize_dynamic(out, spec, dtype=torch.qint8)
            if row_scales:
                out = row_scaled(out)
        if trace if trace is not None else Runtime.from_env().trace:
            out.traced_passes = TracedPasses()
        if kernels.int8_head_available():
            # The arg-max path (every strategy at temperature 0) projects and reduces in one int8
            # kernel without storing logits; sampling at a temperature uses head_override.
            out.fused_head = kernels.Int8Head(model.tok.weight.data, model.head_bias.data + model.never)
    out.precision = precision
    return out.eval()

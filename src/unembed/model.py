"""The one Denoiser: a bidirectional transformer conditioned through AdaLN-Zero.

Inputs: xt [B, L] token ids (some are mask_id), t [B] in (0, 1], cond [B, D] the vector.
The condition c = MLP(cond) + MLP(sinusoid(t)) enters only through adaptive layer norm:
per block, Linear(SiLU(c)) gives shift/scale/gate for attention and MLP (DiT). All those
projections start at zero, so every block starts as the identity and the output at init
does not depend on the condition. The head is tied to the token embeddings.
An optional length head (``model.length_head > 0``) maps the vector alone to the sentence
length (the number of tokens before EOS, 0..L-1), so decoding can fix the end first.
This file is pure: no files, tokenizers or network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of t [B] (scaled by 1000) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def needs_key_mask(visible: torch.Tensor | None, n: int) -> bool:
    """Whether some row of a pass over n positions must not attend to all of them (rows of a batch
    with different committed lengths); when False the pass runs without a key mask."""
    return visible is not None and bool((visible < n - 1).any())


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.n_heads = cfg.n_heads
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(w, 3 * w)
        self.proj = nn.Linear(w, w)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(w, cfg.mlp_dim)
        self.fc2 = nn.Linear(cfg.mlp_dim, w)
        self.drop = nn.Dropout(cfg.dropout)
        self.ada = nn.Linear(w, 6 * w)  # shift, scale, gate for attention and MLP

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, keys: torch.Tensor | None = None, mod: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [B, L, W], c [B, W] (already SiLU'd), keys [B, 1, 1, L] bool or None -> [B, L, W].

        ``mod`` [B, 6W]: this block's AdaLN projection of c when the caller computed it already
        (``Denoiser.ada_fused``); otherwise the block computes it.
        """
        s1, sc1, g1, s2, sc2, g2 = (self.ada(c) if mod is None else mod).chunk(6, dim=-1)
        x = x + g1.unsqueeze(1) * self.drop(self._attn(modulate(self.norm1(x), s1, sc1), keys))
        h = self.fc2(F.gelu(self.fc1(modulate(self.norm2(x), s2, sc2))))
        return x + g2.unsqueeze(1) * self.drop(h)

    def _attn(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_heads, w // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)
        return self.proj(y.transpose(1, 2).reshape(b, n, w))


class Denoiser(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0 or cfg.cond_dim <= 0 or cfg.mask_id < 0:
            raise ValueError("ModelConfig needs vocab_size, cond_dim and mask_id resolved")
        self.cfg = cfg
        w = cfg.width
        self.tok = nn.Embedding(cfg.vocab_size, w)
        self.pos = nn.Embedding(cfg.seq_len, w)
        self.emb_norm = nn.LayerNorm(w, eps=1e-6)
        self.cond_mlp = nn.Sequential(nn.Linear(cfg.cond_dim, w), nn.SiLU(), nn.Linear(w, w))
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(w, 2 * w)
        self.head_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        never = torch.zeros(cfg.vocab_size)
        never[cfg.mask_id] = float("-inf")  # the model never predicts the mask token
        self.register_buffer("never", never, persistent=False)
        self.head_override: nn.Module | None = None
        # Set by precision.for_inference: every block's AdaLN projection and ada_out as one linear
        # (one product per pass instead of n_layers + 1 at batch 1, where each costs its call).
        self.ada_fused: nn.Module | None = None
        # Set by precision.for_inference on an int8 copy: runs passes through TorchScript graphs
        # of this forward (called as traced_passes(self, xt, t, cond, visible)).
        self.traced_passes = None
        if cfg.length_head > 0:
            h = cfg.length_head
            self.length_mlp = nn.Sequential(nn.Linear(cfg.cond_dim, h), nn.GELU(), nn.Linear(h, cfg.seq_len))
        init_weights(self)

    def condition(self, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """[B], [B, D] -> SiLU(c) [B, W], the input of every AdaLN projection."""
        c = self.cond_mlp(cond.to(self.tok.weight.dtype)) + self.time_mlp(
            timestep_embedding(t, self.cfg.width).to(self.tok.weight.dtype)
        )
        return F.silu(c)

    def forward(
        self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, visible: torch.Tensor | None = None
    ) -> torch.Tensor:
        """xt [B, L], t [B], cond [B, D] -> hidden [B, L, W] (apply .logits for [.., V]).

        ``visible`` [B] (optional): row b attends only to its positions 0..visible[b]; xt may then
        be narrower than seq_len (decoding with a committed length runs on the sentence alone).
        """
        if self.traced_passes is not None and not torch.jit.is_tracing():
            return self.traced_passes(self, xt, t, cond, visible)
        return self.eager_forward(xt, t, cond, visible)

    def eager_forward(
        self, xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, visible: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``forward`` op by op in Python (what the traced graphs record)."""
        c = self.condition(t, cond)
        n = xt.shape[1]
        pos = torch.arange(n, device=xt.device)
        keys = None
        if needs_key_mask(visible, n):
            keys = (pos[None] <= visible[:, None])[:, None, None, :]  # [B, 1, 1, n]
        x = self.emb_norm(self.tok(xt) + self.pos(pos)[None])
        if self.ada_fused is None:
            for block in self.blocks:
                x = block(x, c, keys)
            out_mod = self.ada_out(c)
        else:
            *mods, out_mod = self.ada_fused(c).split([6 * self.cfg.width] * len(self.blocks) + [2 * self.cfg.width], -1)
            for block, mod in zip(self.blocks, mods):
                x = block(x, c, keys, mod)
        shift, scale = out_mod.chunk(2, dim=-1)
        return modulate(self.norm_out(x), shift, scale)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [..., W] -> logits [..., V]; the mask token gets -inf."""
        if self.head_override is not None:  # set by precision.for_inference (an int8 copy of the head)
            return self.head_override(hidden)
        return F.linear(hidden, self.tok.weight, self.head_bias + self.never)  # one pass over [.., V]

    @property
    def has_length_head(self) -> bool:
        return self.cfg.length_head > 0

    def length_logits(self, cond: torch.Tensor) -> torch.Tensor:
        """cond [B, D] -> logits [B, L] over the number of tokens before EOS (0..L-1)."""
        if not self.has_length_head:
            raise ValueError("this model has no length head (model.length_head = 0)")
        return self.length_mlp(cond.to(self.tok.weight.dtype))

    def num_params(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.tok.weight.numel() if exclude_embeddings else n


def init_weights(model: Denoiser) -> None:
    """Xavier for linears, N(0, 0.02) embeddings; AdaLN projections zero (AdaLN-Zero)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
    for block in model.blocks:
        nn.init.zeros_(block.ada.weight)
        nn.init.zeros_(block.ada.bias)
    nn.init.zeros_(model.ada_out.weight)
    nn.init.zeros_(model.ada_out.bias)


def init_from_encoder(model: Denoiser, state: dict[str, torch.Tensor]) -> list[str]:
    """Copy what fits from a BERT-style encoder state dict; return the names copied.

    Token and position embeddings (and their LayerNorm) when widths match; attention and MLP
    weights of layer i into block i when shapes match. AdaLN projections stay zero.
    """
    state = {k.removeprefix("bert.").removeprefix("model."): v for k, v in state.items()}
    copied = []

    def put(dst: torch.Tensor, src: torch.Tensor | None, name: str, rows: bool = False) -> None:
        if src is None:
            return
        if rows and src.shape[1:] == dst.shape[1:]:
            n = min(src.shape[0], dst.shape[0])
            dst.data[:n] = src[:n].to(dst.dtype)
        elif src.shape == dst.shape:
            dst.data.copy_(src.to(dst.dtype))
        else:
            return
        copied.append(name)

    g = state.get
    put(model.tok.weight, g("embeddings.word_embeddings.weight"), "tok", rows=True)
    put(model.pos.weight, g("embeddings.position_embeddings.weight"), "pos", rows=True)
    put(model.emb_norm.weight, g("embeddings.LayerNorm.weight"), "emb_norm.weight")
    put(model.emb_norm.bias, g("embeddings.LayerNorm.bias"), "emb_norm.bias")
    for i, block in enumerate(model.blocks):
        p = f"encoder.layer.{i}."
        qkv = [g(f"{p}attention.self.{n}.weight") for n in ("query", "key", "value")]
        qkvb = [g(f"{p}attention.self.{n}.bias") for n in ("query", "key", "value")]
        if all(x is not None for x in qkv + qkvb):
            put(block.qkv.weight, torch.cat(qkv), f"{p}qkv.weight")
            put(block.qkv.bias, torch.cat(qkvb), f"{p}qkv.bias")
        for dst, src in (
            (block.proj, "attention.output.dense"),
            (block.fc1, "intermediate.dense"),
            (block.fc2, "output.dense"),
        ):
            put(dst.weight, g(f"{p}{src}.weight"), f"{p}{src}.weight")
            put(dst.bias, g(f"{p}{src}.bias"), f"{p}{src}.bias")
    return copied

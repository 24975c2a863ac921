"""Where a decoder pass of the shipped model spends its time: the transformer (forward) and the
vocabulary projection (head), at batch 1 and 32, all 32 positions or a 13/14-token sentence,
in fp32, bf16 and int8 (best of 30 runs each; quiet machine).

    python scripts/pass_profile.py
"""

import copy
import time
import warnings

import torch

warnings.filterwarnings("ignore")
from unembed.inverter import Inverter

inv = Inverter.load("default")
m = inv.model.eval()


def bench(f, n=30):
    f()
    f()
    best = 1e9
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1000


cond = torch.nn.functional.normalize(torch.randn(32, 384), dim=-1)
with torch.inference_mode():
    mq = torch.ao.quantization.quantize_dynamic(copy.deepcopy(m), {torch.nn.Linear}, dtype=torch.qint8)
    mb = copy.deepcopy(m).to(torch.bfloat16)
    head = torch.nn.Linear(384, 30522)
    head.weight.data = m.tok.weight.data.clone()
    head.bias.data = m.head_bias.data.clone()
    hq = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(head), {torch.nn.Linear}, dtype=torch.qint8)
    for B, L in ((1, 32), (1, 13), (32, 32), (32, 14)):
        ids = torch.full((B, L), 103)
        t = torch.full((B,), 0.5)
        c = cond[:B]
        h = m(ids, t, c).reshape(-1, 384)
        print(
            B,
            L,
            "fp32 fwd %.2f  q8 fwd %.2f  bf16 fwd %.2f | head fp32 %.2f q8 %.2f bf16 %.2f"
            % (
                bench(lambda: m(ids, t, c)),
                bench(lambda: mq(ids, t, c)),
                bench(lambda: mb(ids, t, c)),
                bench(lambda: m.logits(h)),
                bench(lambda: hq(h)),
                bench(lambda: mb.logits(h.bfloat16())),
            ),
        )
    ids = torch.full((1, 32), 103)
    t = torch.full((1,), 0.5)
    c = cond[:1]
    print(
        "maxdiff q8",
        (mq(ids, t, c) - m(ids, t, c)).abs().max().item(),
        "bf16",
        (mb(ids, t, c).float() - m(ids, t, c)).abs().max().item(),
    )

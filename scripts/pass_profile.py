"""Where a decoder pass of the shipped model spends its time: the transformer (forward) and the
vocabulary projection (head), at batch 1 and 32, all 32 positions or a 13/14-token sentence,
in fp32, bf16 and int8 (best of 30 runs each; quiet machine).

    python scripts/pass_profile.py
"""

import time
import warnings

import torch

from unembed.inverter import Inverter
from unembed.precision import for_inference

warnings.filterwarnings("ignore")

inv = Inverter.load("default", sample={"precision": "fp32"})
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
    models = {"fp32": m, "int8": for_inference(m, "int8"), "bf16": for_inference(m, "bf16")}
    print("| batch x positions | " + " | ".join(f"{p} forward | {p} head" for p in models) + " |")
    for b, n in ((1, 32), (1, 13), (32, 32), (32, 14)):
        ids, t, c = torch.full((b, n), m.cfg.mask_id), torch.full((b,), 0.5), cond[:b]
        cells = []
        for p, model in models.items():
            h = model(ids, t, c).reshape(-1, m.cfg.width)
            cells.append(bench(lambda model=model, x=(ids, t, c): model(*x)))
            cells.append(bench(lambda model=model, h=h: model.logits(h.to(model.tok.weight.dtype))))
        print(f"| {b} x {n} | " + " | ".join(f"{x:.1f}" for x in cells) + " |")

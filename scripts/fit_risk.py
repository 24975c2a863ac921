"""Fit the audit's combined risk score: a logistic regression of "at least 25% of tokens recovered"
on decoder confidence, re-embedding cosine and the log of the predicted length, from an audit
made with reference texts.

    python scripts/fit_risk.py runs/audit-val1000/reconstructions.jsonl

prints the coefficients to paste into ``RISK_COEF`` in src/unembed/audit.py, and Spearman and AUC
of each candidate score on the fitting data (the held-out comparison is the report of an audit of
other records, e.g. docs/audit-chroma).
"""

import argparse
import json

import numpy as np

from unembed.metrics import auc, spearman

LEVEL = 0.25


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Weights [bias, w...] of P(y=1) = sigmoid(bias + x @ w) by Newton's method (IRLS), small L2."""
    a = np.c_[np.ones(len(x)), x]
    w = np.zeros(a.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-a @ w))
        grad = a.T @ (p - y) + l2 * np.r_[0, w[1:]]
        hess = (a * (p * (1 - p))[:, None]).T @ a + l2 * np.diag(np.r_[0, np.ones(len(w) - 1)])
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reconstructions", help="reconstructions.jsonl of an audit with reference texts")
    args = ap.parse_args()
    conf, cos, length, acc = [], [], [], []
    with open(args.reconstructions) as fh:
        for line in fh:
            r = json.loads(line)
            conf.append(r.get("decoder_confidence", r["risk"]))  # older audits: risk was the confidence
            cos.append(r["cosine"])
            length.append(len(r["confidence"]))  # predicted positions up to and including the EOS
            acc.append(r["token_accuracy"])
    conf, cos, log_len, acc = np.asarray(conf), np.asarray(cos), np.log(length), np.asarray(acc)
    y = (acc >= LEVEL - 1e-9).astype(float)
    w = fit_logistic(np.c_[conf, cos, log_len], y)
    combined = 1 / (1 + np.exp(-(w[0] + w[1] * conf + w[2] * cos + w[3] * log_len)))
    names = ("bias", "confidence", "cosine", "log_length")
    coef = {k: round(float(v), 4) for k, v in zip(names, w, strict=True)}
    print(f"{len(y)} records, {int(y.sum())} with >= {LEVEL:.0%} of tokens recovered")
    print("RISK_COEF =", json.dumps(coef))
    for name, score in (("confidence", conf), ("cosine", cos), ("combined", combined)):
        rho, area = spearman(score, acc), auc(score, y > 0)
        print(f"{name:10s} spearman {rho:+.3f}  auc_25 {area:.3f}  mean {score.mean():.3f}")


if __name__ == "__main__":
    main()

"""Check a ``--device`` string before any model or encoder is loaded: one line naming the fix."""

from __future__ import annotations

GPU_INSTALL_HINT = "install a CUDA build of torch (README: Install on a GPU machine) or use --device cpu"


def check_device(name: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` or ``mps`` that this torch build can use -> ``name``; else ValueError."""
    import torch

    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return name
    if dev.type == "cuda":
        if torch.version.cuda is None:
            build = f"this torch ({torch.__version__}) is a CPU-only build"
            raise ValueError(f"device {name!r}: {build}; {GPU_INSTALL_HINT}")
        count = torch.cuda.device_count()
        if count == 0:
            raise ValueError(f"device {name!r}: no CUDA GPU is visible on this machine; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {name!r}: only {count} CUDA GPU(s) here (cuda:0..cuda:{count - 1})")
        return name
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r}: Apple MPS is not available on this machine; use --device cpu")
        return name
    raise ValueError(f"unsupported device {name!r}: use cpu, cuda or cuda:N")

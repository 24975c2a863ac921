"""The names a user can choose, once, torch-free: the CLI's parser, the config's validation and
the modules that implement them all read these tuples."""

from __future__ import annotations

STRATEGIES = ("confidence", "euler", "remask", "two-stage")  # sampling: the decoding strategies
LENGTH_MODES = ("auto", "head", "free")  # inverter: how the end of the sentence is chosen
PRECISIONS = ("auto", "fp32", "bf16", "int8")  # precision: the decoding weights
SCHEDULE_KINDS = ("linear", "exp")  # schedule: the noise schedules

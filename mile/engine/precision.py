"""The numeric precision a run computes in: what was asked for, what is used on this device, and why.

`bf16` is autocast to bfloat16 around the forward pass and the loss (matrix multiplies, convolutions and
attention in bf16; LayerNorm statistics, softmax-cross-entropy and the residual stream in fp32), with fp32
master weights, gradients and optimizer state. It pays only where the hardware multiplies bf16 natively: CUDA
devices that support it, and CPUs with AVX512_BF16 or AMX, where oneDNN runs bf16 GEMMs at two to four times
the fp32 rate. Elsewhere bf16 is emulated and slower than fp32, so `auto` picks fp32 there.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from mile.config import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ACCELERATE_NAMES = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # accelerate's mixed_precision values
USED_NAMES = {name: used for used, name in ACCELERATE_NAMES.items()}
# CPU features with which oneDNN multiplies bf16 natively (names as cpuinfo and /proc/cpuinfo spell them)
CPU_BF16_FEATURES = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    requested: str  # the config's train.mixed_precision: auto | fp32 | bf16 | fp16
    used: str  # fp32 | bf16 | fp16
    device: str  # cpu | cuda
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        """The dtype autocast computes in (float32 for fp32)."""
        return DTYPES.get(self.used, torch.float32)

    def autocast(self) -> AbstractContextManager:
        """The context every forward pass of the run (training, evaluation, probing, prediction) runs in."""
        if self.used == "fp32":
            return nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def describe(self) -> str:
        return (
            f"precision: {self.used} on {self.device} (train.mixed_precision={self.requested}: {self.reason})"
        )


def cpu_bf16_feature() -> str | None:
    """The CPU feature that makes bf16 fast here (`amx_bf16`, `avx512_bf16`), or None."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.5: cpuinfo's feature flags
    if capabilities is not None:
        flags = {name for name, present in capabilities().items() if present is True}
    else:
        flags = _proc_cpuinfo_flags()
    return next((feature for feature in CPU_BF16_FEATURES if feature in flags), None)


def _proc_cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {
        flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":")[1].split()
    }


def resolve_precision(requested: str, device: torch.device | str) -> Precision:
    """What `train.mixed_precision=requested` means on `device`; fp16 on a CPU is a config error."""
    kind = torch.device(device).type
    if kind == "cuda":
        return _cuda(requested, torch.device(device))
    if kind != "cpu":
        return Precision(requested, "fp32", kind, f"no mixed precision on {kind} devices: fp32")
    if requested == "fp16":
        raise ConfigError(
            "train.mixed_precision=fp16 needs a CUDA GPU (fp16 autocast with a loss scaler); on a CPU use "
            "bf16 or auto"
        )
    if requested not in ("auto", "bf16"):
        return Precision(requested, "fp32", "cpu", "as requested")
    feature = cpu_bf16_feature()
    if feature:
        native = f"the CPU has {feature.upper()}: oneDNN multiplies bf16 natively"
        return Precision(
            requested, "bf16", "cpu", native if requested == "auto" else f"as requested; {native}"
        )
    lacking = "the CPU has neither AVX512_BF16 nor AMX"
    if requested == "auto":
        return Precision(requested, "fp32", "cpu", f"{lacking} (bf16 would be emulated, slower than fp32)")
    return Precision(
        requested, "bf16", "cpu", f"as requested, but {lacking}: bf16 is emulated, slower than fp32"
    )


def inference_precision(requested: str, device: torch.device | str) -> Precision:
    """The precision to evaluate or query a run in on `device`: its training request, except that a run trained
    in fp16 on a GPU is used in `auto` precision on a CPU (where fp16 autocast does not exist)."""
    if requested == "fp16" and torch.device(device).type == "cpu":
        auto = resolve_precision("auto", device)
        return Precision(requested, auto.used, "cpu", f"an fp16 run on a CPU: {auto.reason}")
    return resolve_precision(requested, device)


def _cuda(requested: str, device: torch.device) -> Precision:
    name = torch.cuda.get_device_name(device)
    if requested == "auto":
        if torch.cuda.is_bf16_supported():
            return Precision(requested, "bf16", "cuda", f"{name} supports bf16")
        return Precision(requested, "fp32", "cuda", f"{name} has no bf16 support")
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.mixed_precision=bf16: {name} does not support bf16; use fp16, fp32 or auto")
    return Precision(requested, requested, "cuda", "as requested")

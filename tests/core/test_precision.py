"""The one reading of a precision name (explain, the data-set job and train share it)."""

from __future__ import annotations

import pytest
import torch

from camscope.core.precision import autocast_dtype, canonical_precision, forward_precision
from camscope.errors import UsageError
from camscope.training.epochs import autocast_dtype as training_dtype


def test_names_aliases_and_devices() -> None:
    assert [canonical_precision(n) for n in ("fp32", "float32", "bfloat16", "float16")] == [
        "fp32",
        "fp32",
        "bf16",
        "fp16",
    ]
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("fp16", "cuda") is torch.float16  # no GPU needed to read the name
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(UsageError, match="got 'int8'"):
        canonical_precision("int8")


def test_the_context_autocasts_only_below_fp32() -> None:
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with forward_precision("fp32", "cpu"):
        assert layer(x).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
    with forward_precision("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    assert layer(x).dtype == torch.float32


def test_training_reads_the_same_names_with_its_auto() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert training_dtype("auto", cpu) is None and training_dtype("auto", gpu) is torch.float16
    assert training_dtype("bf16", cpu) is torch.bfloat16 and training_dtype("fp32", gpu) is None
    with pytest.raises(UsageError, match="fp16 needs a CUDA GPU"):
        training_dtype("fp16", cpu)

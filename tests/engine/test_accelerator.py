"""The two collectives of the training loop, computed for two simulated processes in one: DDP's average of what
each process backpropagates is the token mean over the global batch, and a non-finite loss on any process
skips the step on all of them."""

import pytest
import torch

from mile.engine.accelerator import all_finite, global_token_mean, make_accelerator, run_precision
from mile.model.mile import VQAOutput


class TwoProcesses:
    """Stands in for accelerate's Accelerator across two ranks: `reduce` returns what the collective would."""

    num_processes = 2

    def __init__(self, values):
        self.values = values  # every rank's contribution to the collective

    def reduce(self, tensor, reduction):
        stacked = torch.stack(
            [torch.as_tensor(v, dtype=tensor.dtype).reshape(tensor.shape) for v in self.values]
        )
        return {"sum": stacked.sum(0), "min": stacked.min(0).values}[reduction]


def test_ddp_average_of_the_per_process_losses_is_the_global_token_mean():
    # rank 0: 3 answer tokens, mean loss 2.0; rank 1: 9 tokens, mean 1.0 -> global mean (6 + 9) / 12 = 1.25
    losses, tokens = [torch.tensor(2.0), torch.tensor(1.0)], [3, 9]
    each = [
        global_token_mean(VQAOutput(loss=loss, logits=None, n_tokens=torch.tensor(n)), TwoProcesses(tokens))
        for loss, n in zip(losses, tokens, strict=True)
    ]  # fmt: skip
    assert torch.allclose(sum(each) / 2, torch.tensor(1.25))  # DDP averages gradients, so losses, over ranks
    assert not torch.allclose(sum(losses) / 2, torch.tensor(1.25))  # the per-rank means would give 1.5


def test_one_process_backpropagates_its_own_mean_loss():
    class One:
        num_processes = 1

    loss = torch.tensor(0.7)
    assert global_token_mean(VQAOutput(loss=loss, logits=None, n_tokens=torch.tensor(5)), One()) is loss


@pytest.mark.parametrize(
    "mine, other, expected",
    [(1.0, 2.0, True), (1.0, float("nan"), False), (float("inf"), 2.0, False)],
)
def test_a_non_finite_loss_on_any_process_skips_the_step_everywhere(mine, other, expected):
    finite = [float(torch.isfinite(torch.tensor(v))) for v in (mine, other)]
    assert all_finite(torch.tensor(mine), TwoProcesses(finite)) is expected


def test_a_single_process_checks_only_its_own_loss():
    from mile.config import load_config

    cfg = load_config(None, ["model.size=tiny", "train.mixed_precision=fp32", "train.grad_accum=3"])
    accelerator = make_accelerator(cfg, run_precision(cfg))
    assert accelerator.num_processes == 1 and accelerator.gradient_accumulation_steps == 3
    assert accelerator.mixed_precision == "no"
    assert all_finite(torch.tensor(1.0), accelerator) and not all_finite(
        torch.tensor(float("nan")), accelerator
    )

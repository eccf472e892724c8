"""The trainer: feature-cache accumulation, exact resume, signals, non-finite guard, checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from train_job import build_dataset, build_model  # tests/shared/jobs is on pytest's pythonpath

from shared.checkpoints import CheckpointError, CheckpointManager, check_resume, load_training_state
from shared.data_iteration import TensorDictDataset, batches_from_dataset
from shared.run_folder import RunFolder, read_metrics
from shared.trainer import (
    BestValue,
    ContrastiveTrainable,
    NonFiniteGuard,
    TrainableModel,
    Trainer,
    TrainerConfig,
    TrainingDiverged,
    build_optimizer,
    check_trainer_config,
    resolve_budget,
)
from shared.user_errors import UserError

JOBS = Path(__file__).parent / "jobs"


def run_job(run_dir: Path, *options: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(JOBS / "train_job.py"), str(run_dir), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_rank_weights(run_dir: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / f"rank{rank}_weights.pt", weights_only=True)


def assert_bitwise_equal(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("accum_steps", [2, 4])
def test_feature_cache_accumulation_equals_one_big_batch(tmp_path: Path, accum_steps: int) -> None:
    dataset = build_dataset(64)
    big_batch = next(iter(batches_from_dataset(dataset, 32, shuffle=False)(0, 0)))
    micro_batches = list(batches_from_dataset(dataset, 32 // accum_steps, shuffle=False)(0, 0))[:accum_steps]

    model = build_model().eval()  # eval: dropout off, so both passes see the same function
    reference_trainer = Trainer(model, TrainerConfig(progress_bar=False), tmp_path / "one")
    model.train = lambda mode=True: model  # keep dropout off inside the trainer too
    big_loss, _ = reference_trainer.accumulate_gradients([big_batch])
    big_grads = gradients(model)

    accumulating = Trainer(model, TrainerConfig(accum_steps=accum_steps, progress_bar=False), tmp_path / "acc")
    accumulated_loss, _ = accumulating.accumulate_gradients(micro_batches)
    accumulated_grads = gradients(model)

    assert accumulated_loss.item() == pytest.approx(big_loss.item(), abs=1e-6)
    assert big_grads.keys() == accumulated_grads.keys()
    assert any("logit_scales" in name for name in big_grads)
    for name in big_grads:
        assert torch.allclose(big_grads[name], accumulated_grads[name], atol=1e-6, rtol=1e-5), name


def test_plain_accumulation_averages_supervised_losses(tmp_path: Path) -> None:
    torch.manual_seed(0)

    class Regressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(3, 1)

        def forward(self, batch: dict) -> dict:
            return {"loss": ((self.linear(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}

    x, y = torch.randn(8, 3), torch.randn(8)
    model = Regressor()
    trainer = Trainer(model, TrainerConfig(progress_bar=False), tmp_path)
    loss_big, _ = trainer.accumulate_gradients([{"x": x, "y": y}])
    grads_big = gradients(model)
    loss_split, _ = trainer.accumulate_gradients([{"x": x[:4], "y": y[:4]}, {"x": x[4:], "y": y[4:]}])
    assert loss_split.item() == pytest.approx(loss_big.item(), rel=1e-6)
    for name, grad in gradients(model).items():
        assert torch.allclose(grad, grads_big[name], atol=1e-6)


class SimulatedCrash(RuntimeError):
    """Stands in for a killed process."""


def job_config(**overrides: object) -> TrainerConfig:
    values = dict(
        max_steps=20,
        lr=1e-2,
        warmup_steps=3,
        checkpoint_every=4,
        keep_last=2,
        log_every=1,
        seed=3,
        grad_clip_norm=1.0,
        progress_bar=False,
    )
    values.update(overrides)
    return TrainerConfig(**values)


def job_batches(crash_after: int = 0, on_batch=None):
    base = batches_from_dataset(build_dataset(), 16, seed=5)
    served = {"count": 0}

    def make_batches(epoch: int, start_batch: int):
        for batch in base(epoch, start_batch):
            served["count"] += 1
            if crash_after and served["count"] > crash_after:
                raise SimulatedCrash("simulated crash")
            if on_batch is not None:
                on_batch(served["count"])
            yield batch

    return make_batches


def train_weights(run_dir: Path, make_batches, **overrides: object) -> dict[str, torch.Tensor]:
    model = build_model()
    Trainer(model, job_config(**overrides), run_dir).fit(make_batches)
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def test_crash_and_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = train_weights(tmp_path / "straight", job_batches(), accum_steps=2)
    interrupted = tmp_path / "interrupted"
    with pytest.raises(SimulatedCrash):
        train_weights(interrupted, job_batches(crash_after=21), accum_steps=2)
    assert CheckpointManager(interrupted / "checkpoints").latest().name == "step_00000008.pt"
    resumed = train_weights(interrupted, job_batches(), accum_steps=2, resume="latest")
    assert_bitwise_equal(straight, resumed)
    # metrics.csv of the resumed run holds each step once.
    steps = [
        int(line.split(",")[0])
        for line in (interrupted / "metrics.csv").read_text().splitlines()[1:]
        if ",train,loss," in line
    ]
    assert steps == list(range(1, 21))


def test_sigint_finishes_the_step_saves_and_prints_the_resume_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"

    def interrupt(count: int) -> None:
        if count == 7:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(SystemExit) as stopped:
        train_weights(run_dir, job_batches(on_batch=interrupt), checkpoint_every=100)
    assert stopped.value.code == 128 + signal.SIGINT
    output = capsys.readouterr().out
    assert "Resume with:" in output and "--trainer.resume latest" in output
    state = load_training_state(CheckpointManager(run_dir / "checkpoints").latest())
    assert state["step"] == 7  # the step in flight when the signal came was finished, then saved

    straight = train_weights(tmp_path / "straight", job_batches(), checkpoint_every=100)
    resumed = train_weights(run_dir, job_batches(), checkpoint_every=100, resume="latest")
    assert_bitwise_equal(straight, resumed)


class NaNOnFlag(nn.Module):
    """Regression model whose loss is NaN for batches flagged as poisoned."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, batch: dict) -> dict:
        loss = ((self.linear(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()
        return {"loss": loss * torch.where(batch["poison"].any(), torch.nan, 1.0)}


def poisoned_batches(poisoned: set[int]):
    def make_batches(epoch: int, start_batch: int):
        for index in range(start_batch, 10):
            flag = torch.tensor([epoch * 10 + index in poisoned])
            yield {"x": torch.ones(4, 2), "y": torch.zeros(4), "poison": flag.expand(4)}

    return make_batches


def test_nonfinite_steps_are_skipped_and_counted(tmp_path: Path) -> None:
    model = NaNOnFlag()
    trainer = Trainer(model, TrainerConfig(max_steps=8, lr=1e-2, progress_bar=False, checkpoint_every=4), tmp_path)
    result = trainer.fit(poisoned_batches({1, 2}))
    assert result.step == 8 and result.nonfinite_skipped == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_nonfinite_steps_stop_with_the_last_good_checkpoint(tmp_path: Path) -> None:
    config = TrainerConfig(max_steps=20, progress_bar=False, checkpoint_every=2, max_nonfinite_steps=3)
    trainer = Trainer(NaNOnFlag(), config, tmp_path)
    with pytest.raises(TrainingDiverged, match="step_00000004.pt"):
        trainer.fit(poisoned_batches(set(range(4, 100))))


def test_missing_resume_path_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    model = build_model()
    trainer = Trainer(model, TrainerConfig(resume=str(tmp_path / "nope.pt"), progress_bar=False), tmp_path / "r")
    with pytest.raises(CheckpointError, match="nope.pt"):
        trainer.fit(batches_from_dataset(build_dataset(32), 8))
    fresh = Trainer(build_model(), TrainerConfig(resume="latest", progress_bar=False), tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fresh.fit(batches_from_dataset(build_dataset(32), 8))


def test_truncated_checkpoint_names_the_file(tmp_path: Path) -> None:
    model = build_model()
    trainer = Trainer(model, TrainerConfig(max_steps=2, checkpoint_every=2, progress_bar=False), tmp_path)
    trainer.fit(batches_from_dataset(build_dataset(32), 8))
    state_path = CheckpointManager(tmp_path / "checkpoints").latest()
    data = state_path.read_bytes()
    state_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=state_path.name):
        load_training_state(state_path)


def test_checkpoints_keep_last_k_and_weights_load_with_weights_only(tmp_path: Path) -> None:
    model = build_model()
    config = TrainerConfig(max_steps=10, checkpoint_every=2, keep_last=2, progress_bar=False)
    Trainer(model, config, tmp_path).fit(batches_from_dataset(build_dataset(64), 8))
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "latest.json",
        "step_00000008.pt",
        "step_00000008.safetensors",
        "step_00000010.pt",
        "step_00000010.safetensors",
    ]
    state = torch.load(tmp_path / "checkpoints" / "step_00000010.pt", weights_only=True)
    assert state["step"] == 10 and isinstance(state["rng"]["torch"], torch.Tensor)
    assert (tmp_path / "model.safetensors").is_file()


def test_tensorboard_is_written_when_asked(tmp_path: Path) -> None:
    config = TrainerConfig(max_steps=2, log_every=1, tensorboard=True, progress_bar=False)
    Trainer(build_model(), config, tmp_path).fit(batches_from_dataset(build_dataset(32), 8))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_validation_selects_the_best_weights_and_stops_early(tmp_path: Path) -> None:
    dataset = TensorDictDataset({"x": torch.randn(32, 2), "y": torch.randn(32)})

    class Regressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, batch: dict) -> dict:
            return {"loss": ((self.linear(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}

    scores = iter([0.5, 0.9, 0.4, 0.3, 0.2, 0.1])
    snapshots = []

    def validate(model: nn.Module) -> dict[str, float]:
        snapshots.append(model.linear.weight.detach().clone())
        return {"score": next(scores)}

    model = Regressor()
    config = TrainerConfig(
        max_steps=100, validate_every=2, select_metric="score", early_stopping_patience=3, progress_bar=False
    )
    result = Trainer(model, config, tmp_path).fit(batches_from_dataset(dataset, 8), validate)
    assert result.stop_reason == "early_stopping" and result.step == 10  # best at 4, then 6, 8, 10 worse
    assert result.best_metric == 0.9
    assert torch.equal(model.linear.weight.detach(), snapshots[1])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_process_job_matches_single_process(tmp_path: Path, launcher: str) -> None:
    single = tmp_path / "single"
    run_job(single, "max_steps=6", "batch_size=16", "dropout=0")
    multi = tmp_path / "multi"
    script = [str(JOBS / "train_job.py"), str(multi), "max_steps=6", "batch_size=8", "dropout=0"]
    if launcher == "torchrun":
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *script]
        env = dict(os.environ)
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *script]
        env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = load_rank_weights(multi, 0), load_rank_weights(multi, 1)
    assert_bitwise_equal(rank0, rank1)
    # Each rank logs its local loss; with local loss + gather with grad their mean is the global batch's loss.
    first_single = float((single / "rank0_first_loss.txt").read_text())
    first_multi = [float((multi / f"rank{rank}_first_loss.txt").read_text()) for rank in (0, 1)]
    assert sum(first_multi) / 2 == pytest.approx(first_single, abs=1e-5)
    single_weights = load_rank_weights(single)
    for name in single_weights:
        assert torch.allclose(single_weights[name], rank0[name], atol=1e-5), name


class _Regressor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, batch: dict) -> dict:
        return {"loss": ((self.linear(batch["x"]).squeeze(-1) - batch["y"]) ** 2).mean()}


def test_epoch_budgets_resolve_to_steps_and_conflicts_name_both_flags() -> None:
    config = TrainerConfig(max_steps=None, max_epochs=2.5, warmup_epochs=0.5, validate_every_epochs=1)
    resolved = resolve_budget(config, steps_per_epoch=10)
    assert (resolved.max_steps, resolved.warmup_steps, resolved.validate_every) == (25, 5, 10)
    assert resolved.checkpoint_every == 50 and resolved.max_epochs == 2.5
    assert resolve_budget(resolved, steps_per_epoch=10) == resolved  # a saved config re-runs as it is
    with pytest.raises(UserError, match=r"--trainer\.max_epochs: this command counts its budget in steps"):
        resolve_budget(resolved)  # a step-budget command never silently ignores an epoch setting
    with pytest.raises(UserError, match=r"--trainer\.max_steps 100 and --trainer\.max_epochs 2 "):
        resolve_budget(TrainerConfig(max_steps=100, max_epochs=2), steps_per_epoch=10)
    with pytest.raises(UserError, match=r"--trainer\.max_epochs: this command counts its budget in steps"):
        resolve_budget(TrainerConfig(max_steps=None, max_epochs=2))
    with pytest.raises(UserError, match="no training budget"):
        resolve_budget(TrainerConfig(max_steps=None))
    with pytest.raises(UserError, match=r"--trainer\.max_steps: must be >= 1"):
        resolve_budget(TrainerConfig(max_steps=0))


def test_epoch_budget_runs_exactly_that_many_epochs(tmp_path: Path) -> None:
    dataset = TensorDictDataset({"x": torch.randn(32, 2), "y": torch.randn(32)})
    config = resolve_budget(TrainerConfig(max_steps=None, max_epochs=3, progress_bar=False, log_every=1), 4)
    result = Trainer(_Regressor(), config, tmp_path).fit(batches_from_dataset(dataset, 8))
    assert result.step == 12
    rows = read_metrics(tmp_path)
    assert max(r["step"] for r in rows) == 12 and max(r["epoch"] for r in rows) == 2


def test_adam_couples_weight_decay_into_the_gradient_adamw_decouples_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    batch = {"x": torch.randn(8, 2), "y": torch.randn(8)}
    results = {}
    for name in ("adam", "adamw"):
        torch.manual_seed(1)
        model = _Regressor()
        config = TrainerConfig(optimizer=name, lr=0.1, weight_decay=0.5, schedule="constant", progress_bar=False)
        trainer = Trainer(model, config, tmp_path / name)
        expected_class = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        assert type(trainer.optimizer) is expected_class
        decayed = [g for g in trainer.optimizer.param_groups if g["weight_decay"] > 0]
        assert [p.shape for g in decayed for p in g["params"]] == [torch.Size([1, 2])]  # weights, not the bias
        trainer._optimizer_step([batch])
        results[name] = model.linear.weight.detach().clone()
    # Reference single steps: Adam's first step moves every coordinate by lr * sign(grad + wd * w);
    # AdamW's by lr * sign(grad) plus a decoupled lr * wd * w shrink.
    torch.manual_seed(1)
    reference = _Regressor()
    w0 = reference.linear.weight.detach().clone()
    reference(batch)["loss"].backward()
    grad = reference.linear.weight.grad
    eps = 1e-6
    adam = w0 - 0.1 * (grad + 0.5 * w0) / ((grad + 0.5 * w0).abs() + eps)
    adamw = w0 * (1 - 0.1 * 0.5) - 0.1 * grad / (grad.abs() + eps)
    assert torch.allclose(results["adam"], adam, atol=1e-5)
    assert torch.allclose(results["adamw"], adamw, atol=1e-5)
    with pytest.raises(UserError, match="--trainer.optimizer"):
        Trainer(_Regressor(), TrainerConfig(optimizer="lbfgs", progress_bar=False), tmp_path / "lbfgs")


def test_selection_and_stopping_metrics_may_differ(tmp_path: Path) -> None:
    dataset = TensorDictDataset({"x": torch.randn(32, 2), "y": torch.randn(32)})
    # Accuracy peaks at the 2nd validation; the loss keeps falling until the 3rd, then rises for 2.
    accuracies = iter([0.5, 0.9, 0.6, 0.7, 0.8, 0.1])
    losses = iter([1.0, 0.9, 0.5, 0.6, 0.7, 0.1])
    snapshots = []

    def validate(model: nn.Module) -> dict[str, float]:
        snapshots.append(model.linear.weight.detach().clone())
        return {"accuracy": next(accuracies), "loss": next(losses)}

    config = TrainerConfig(
        max_steps=100,
        validate_every=2,
        select_metric="accuracy",
        stop_metric="loss",
        stop_mode="min",
        early_stopping_patience=2,
        progress_bar=False,
    )
    model = _Regressor()
    result = Trainer(model, config, tmp_path).fit(batches_from_dataset(dataset, 8), validate)
    # Stopping follows the loss (best at validation 3 = step 6, then 2 misses → stop at step 10) ...
    assert result.stop_reason == "early_stopping" and result.step == 10
    # ... while the kept weights follow accuracy (validation 2 = step 4).
    assert result.best_metric == 0.9
    assert torch.equal(model.linear.weight.detach(), snapshots[1])
    with pytest.raises(UserError, match="--trainer.stop_mode"):
        Trainer(_Regressor(), TrainerConfig(stop_metric="loss", progress_bar=False), tmp_path / "x")


def test_models_outside_the_protocol_are_refused_and_contrastive_ones_recognised(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="TrainableModel"):
        Trainer(object(), TrainerConfig(progress_bar=False), tmp_path)  # type: ignore[arg-type]
    assert isinstance(build_model(), ContrastiveTrainable)
    assert not isinstance(_Regressor(), ContrastiveTrainable)
    assert isinstance(_Regressor(), TrainableModel)


def test_finished_marker_is_cleared_when_a_run_folder_trains_again(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.mark_finished("domains.x.train", [])
    dataset = TensorDictDataset({"x": torch.randn(16, 2), "y": torch.randn(16)})
    Trainer(_Regressor(), TrainerConfig(max_steps=1, progress_bar=False), tmp_path).fit(
        batches_from_dataset(dataset, 8)
    )
    assert not folder.is_finished


def test_best_value_scalar_and_per_replica() -> None:
    scalar = BestValue("min")
    assert [scalar.update(v) for v in (3.0, 4.0, 2.0, 2.0)] == [True, False, True, False]
    assert scalar.best == 2.0
    replicas = BestValue("max")
    assert replicas.update(torch.tensor([0.1, 0.5])).tolist() == [True, True]
    assert replicas.update(torch.tensor([0.2, 0.4])).tolist() == [True, False]
    assert replicas.best.tolist() == pytest.approx([0.2, 0.5])
    with pytest.raises(ValueError, match="mode"):
        BestValue("up")


def test_nonfinite_guard_skips_then_stops_past_the_bound() -> None:
    guard = NonFiniteGuard(max_consecutive=2)
    for step, finite in enumerate([False, True, False, False]):
        guard.record(finite, step)
    assert (guard.in_a_row, guard.total) == (2, 3)
    with pytest.raises(TrainingDiverged, match="3 consecutive non-finite steps at step 4; see x"):
        guard.record(False, 4, "see x")
    with pytest.raises(TrainingDiverged):
        NonFiniteGuard(0).record(False, 1)


def test_sgd_and_config_checks() -> None:
    model = _Regressor()
    optimizer = build_optimizer(model, TrainerConfig(optimizer="sgd", lr=0.5, weight_decay=0.1))
    assert type(optimizer) is torch.optim.SGD
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
    params = build_optimizer(list(model.parameters()), TrainerConfig(optimizer="adam", lr=0.5)).param_groups
    assert len(params) == 1 and params[0]["lr"] == 0.5
    for bad, flag in (
        ({"optimizer": "rmsprop"}, "--trainer.optimizer"),
        ({"select_mode": "up"}, "--trainer.select_mode"),
        ({"schedule": "linear"}, "--trainer.schedule"),
        ({"log_every": 0}, "--trainer.log_every"),
        ({"lr": float("nan")}, "--trainer.lr"),
    ):
        with pytest.raises(UserError, match=flag):
            check_trainer_config(TrainerConfig(**bad))


def test_check_resume_refuses_early_what_the_trainer_would_refuse(tmp_path: Path) -> None:
    check_resume(None, tmp_path / "checkpoints")  # no resume asked: nothing to check
    with pytest.raises(CheckpointError, match=r"^--trainer\.resume latest: no checkpoint in .*run without"):
        check_resume("latest", tmp_path / "checkpoints")
    with pytest.raises(CheckpointError, match=r"--trainer\.resume .*nope\.pt: no such checkpoint file"):
        check_resume(str(tmp_path / "nope.pt"), tmp_path / "checkpoints")
    trainer = Trainer(_Regressor(), TrainerConfig(max_steps=2, checkpoint_every=2, progress_bar=False), tmp_path)
    trainer.fit(batches_from_dataset(TensorDictDataset({"x": torch.randn(16, 2), "y": torch.randn(16)}), 8))
    check_resume("latest", tmp_path / "checkpoints")


def test_decay_all_parameters_puts_biases_and_norms_in_the_decayed_group() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    default = build_optimizer(model, TrainerConfig(optimizer="adam", weight_decay=0.1)).param_groups
    assert sorted((group["weight_decay"], len(group["params"])) for group in default) == [(0.0, 3), (0.1, 1)]
    everything = build_optimizer(model, TrainerConfig(optimizer="adam", weight_decay=0.1, decay_all_parameters=True))
    assert [(group["weight_decay"], len(group["params"])) for group in everything.param_groups] == [(0.1, 4)]

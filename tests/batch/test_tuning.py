"""The data-set job's tuner: which threads, decode workers and batch size it keeps from given
measurements (hand-made seconds per image), that it keeps what the caller set, and that it
changes the thread count when a recheck is faster; then a real job that probes."""

from __future__ import annotations

from pathlib import Path

import torch
from image_folders import GOOD, MODEL

from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job
from camscope.batch.tuning import RECHECK_SECONDS, Plan, Tuner, available_cores


def measure(tuner: Tuner, decode_ms: float, model_ms: dict[tuple[int, int | None], float]) -> Plan:
    """Record every probe with ``model_ms[(batch, threads)]`` ms per image, then decide."""
    for plan in tuner.probes:
        n = plan.batch_size
        tuner.record(plan, n, n * decode_ms / 1e3, n * model_ms[(n, plan.threads)] / 1e3)
    return tuner.decide()


def quiet(ms16: float = 25.0, ms32: float = 25.0, ms1: float = 40.0) -> dict:
    return {(8, 2): 30.0, (16, 1): ms1, (16, 2): ms16, (32, 2): ms32}


def test_a_quiet_two_core_machine_with_cheap_decoding_keeps_both_threads_in_process() -> None:
    tuner = Tuner("cpu", 1000, cores=2)
    assert tuner.probes == [Plan(8, 0, 2), Plan(16, 0, 1), Plan(16, 0, 2), Plan(32, 0, 2)]
    # in process: 2 + 25 = 27 ms; one worker: max(2, 40 at one thread) = 40 ms
    assert measure(tuner, 2.0, quiet()) == Plan(16, 0, 2)


def test_another_process_on_a_core_gives_one_thread() -> None:
    busy = {**quiet(), (16, 2): 120.0, (32, 2): 118.0}  # the 2-thread pass collapses
    plan = measure(Tuner("cpu", 1000, cores=2), 2.0, busy)
    assert plan == Plan(16, 0, 1)  # and no decode worker to compete for the free core
    # within the 10% margin two threads stay, but no worker takes the core that gave nothing
    assert measure(Tuner("cpu", 1000, cores=2), 2.0, quiet(ms16=25.0, ms1=23.0)) == Plan(16, 0, 2)


def test_the_batch_size_is_the_faster_per_image_beyond_three_percent() -> None:
    assert measure(Tuner("cpu", 1000, cores=2), 2.0, quiet(ms32=23.0)).batch_size == 32
    assert measure(Tuner("cpu", 1000, cores=2), 2.0, quiet(ms32=24.5)).batch_size == 16


def test_decoding_as_costly_as_the_model_gets_a_worker_and_the_other_core() -> None:
    # in process: 30 + 25 = 55 ms; one worker: max(30, 40) = 40 ms per image
    assert measure(Tuner("cpu", 1000, cores=2), 30.0, quiet()) == Plan(16, 1, 1)
    # eight cores, the model 8 ms at 7 threads (estimated linear below): 2 workers give
    # max(15, 9.3) = 15 ms, 3 give max(10, 11.2) = 11.2 ms, 4 give max(7.5, 14) = 14 ms
    eight = {(8, 8): 10.0, (16, 7): 8.0, (16, 8): 7.0, (32, 8): 7.0}
    assert measure(Tuner("cpu", 1000, cores=8), 30.0, eight) == Plan(16, 3, 5)


def test_what_the_caller_set_is_kept_and_not_probed() -> None:
    fixed = Tuner("cpu", 1000, cores=2, batch_size=8, decode_workers=0, threads=2)
    assert fixed.probes == [] and fixed.decide() == Plan(8, 0, 2)
    assert fixed.report()["why"] == ["no probes: set by the caller"]
    batch_only = Tuner("cpu", 1000, cores=2, batch_size=4)
    assert [p.batch_size for p in batch_only.probes] == [4, 4, 4]
    plan = measure(batch_only, 2.0, {(4, 2): 25.0, (4, 1): 40.0})
    assert plan == Plan(4, 0, 2)
    threads_only = Tuner("cpu", 1000, cores=2, threads=1)
    assert all(p.threads == 1 for p in threads_only.probes)
    # the caller's one thread leaves one core free: a worker fits beside it when decoding costs
    plan = measure(threads_only, 30.0, {(8, 1): 40.0, (16, 1): 40.0, (32, 1): 40.0})
    assert plan == Plan(16, 1, 1)


def test_too_few_inputs_skip_the_probes() -> None:
    tuner = Tuner("cpu", 100, cores=2)  # the probes would take 72 of 100
    assert tuner.probes == [] and tuner.decide() == Plan(16, 0, 2)
    assert tuner.report()["why"] == ["no probes: too few inputs"]


def test_a_gpu_takes_the_smallest_batch_near_the_fastest_and_enough_workers() -> None:
    tuner = Tuner("cuda", 10_000, cores=16)
    assert [p.batch_size for p in tuner.probes] == [32, 32, 64, 128]
    per_image = {(32, None): 2.0, (64, None): 1.2, (128, None): 1.15}
    # batch 64: 1.2 ms is within 5% of 1.15; decoding 5 ms per image needs 5 workers for
    # max(5/w, 1.2) to reach 1.2 ms, and 4 (1.25 ms) are within 5% of it
    assert measure(tuner, 5.0, per_image) == Plan(64, 4, None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_recheck_switches_threads_only_when_the_other_count_is_faster() -> None:
    clock = Clock()
    tuner = Tuner("cpu", 10_000, cores=2, clock=clock)
    assert measure(tuner, 2.0, quiet()) == Plan(16, 0, 2)
    for _ in range(4):
        assert tuner.threads_for_next_batch() == 2
        tuner.observe(2, 16, 16 * 0.025)
    for _ in range(8):  # another process starts: two threads slow to 60 ms per image
        assert tuner.threads_for_next_batch() == 2  # no recheck before RECHECK_SECONDS
        tuner.observe(2, 16, 16 * 0.060)
    clock.now += RECHECK_SECONDS
    assert tuner.threads_for_next_batch() == 1  # the recheck batch
    tuner.observe(1, 16, 16 * 0.040)
    assert tuner.plan == Plan(16, 0, 1) and tuner.threads_for_next_batch() == 1
    for _ in range(3):
        tuner.observe(tuner.threads_for_next_batch(), 16, 16 * 0.040)
    clock.now += RECHECK_SECONDS
    assert tuner.threads_for_next_batch() == 2  # both threads are tried again: still slow
    tuner.observe(2, 16, 16 * 0.059)
    assert tuner.plan.threads == 1 and tuner.threads_for_next_batch() == 1
    report = tuner.report()
    assert report["decided"]["threads"] == 2 and report["final"]["threads"] == 1
    assert [s["threads"] for s in report["thread_switches"]] == [1]


def test_no_recheck_for_a_compiled_model_or_a_gpu() -> None:
    clock = Clock()
    for tuner in (
        Tuner("cpu", 10_000, cores=2, clock=clock, recheck=False),
        Tuner("cuda", 10_000, cores=2, clock=clock),
    ):
        tuner.decide()
        for _ in range(5):
            tuner.observe(tuner.threads_for_next_batch(), 16, 0.4)
            clock.now += RECHECK_SECONDS
        assert tuner.report()["thread_switches"] == [] and tuner._trying is None


def test_a_job_probes_then_runs_its_plan_and_restores_the_threads(
    image_folder: Path, tmp_path: Path
) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    seen: list[int] = []
    # batch 2 given: the probes are batches of 2 (warm-up, one thread fewer, every core)
    job = DatasetJob(image_folder, tmp_path, model=ModelRecipe(MODEL), batch_size=2)
    try:
        result = run_dataset_job(job, progress=lambda done, total: seen.append(done))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    tuning = result.summary["this_run"]["tuning"]
    c = available_cores()
    expected = [(2, c, 2), (2, c - 1, 2), (2, c, 2)] if c > 1 else [(2, 1, 2), (2, 1, 2)]
    assert [(p["batch_size"], p["threads"], p["images"]) for p in tuning["probes"]] == expected
    assert tuning["decided"]["batch_size"] == 2 and tuning["decided"]["threads"] in (c, c - 1)
    assert result.summary["this_run"]["torch_threads"] == tuning["decided"]["threads"]
    assert seen[-1] == GOOD + 3 and len(open_maps(tmp_path).ids()) == GOOD

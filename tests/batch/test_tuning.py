"""The data-set job's tuner: which threads, decode workers and batch size it keeps from given
measurements (hand-made seconds per image), that it keeps what the caller set, and that it
changes the thread count when a recheck is faster; then a real job that probes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from image_folders import GOOD, MODEL

from camscope.batch import DatasetJob, ModelRecipe, open_maps, run_dataset_job
from camscope.batch.tuning import RECHECK_SECONDS, Plan, Tuner, available_cores
from camscope.models import load_model

WARM_MS = 100.0  # warm-up batches: their times must not count


def measure(
    tuner: Tuner, decode_ms: float, model_ms: dict[tuple[int, int | None, bool], float]
) -> Plan:
    """Run the probes with ``model_ms[(batch, threads, channels_last)]`` ms per image (the
    probes of 8 images cost what 16 do unless given; warm-ups, the first batch in each layout,
    at WARM_MS), then decide."""
    seen: list[Plan] = []
    while (plan := tuner.next_probe()) is not None:
        n = plan.batch_size
        warm = not any(p.channels_last == plan.channels_last for p in seen)
        key = (n, plan.threads, plan.channels_last)
        fallback = (16, *key[1:])
        ms = WARM_MS if warm else model_ms[key if key in model_ms else fallback]
        seen.append(plan)
        tuner.record(plan, n, n * decode_ms / 1e3, n * ms / 1e3)
    return tuner.decide()


def probes(tuner: Tuner, model_ms: dict[tuple[int, int | None, bool], float]) -> list[Plan]:
    measure(tuner, 2.0, model_ms)
    return [p.plan for p in tuner.measured]


def quiet(ms16: float = 25.0, ms32: float = 25.0, ms1: float = 40.0) -> dict:
    return {(16, 1, False): ms1, (16, 2, False): ms16, (32, 2, False): ms32}


def test_a_quiet_two_core_machine_with_cheap_decoding_keeps_both_threads_in_process() -> None:
    tuner = Tuner("cpu", 1000, cores=2)
    # a warm-up, the threads on batches of 8, then the batch size
    assert probes(tuner, quiet()) == [
        Plan(8, 0, 2),
        Plan(8, 0, 2),
        Plan(8, 0, 1),
        Plan(16, 0, 2),
        Plan(32, 0, 2),
    ]
    assert [p.warmup for p in tuner.measured] == [True, False, False, False, False]
    # in process: 2 + 25 = 27 ms; one worker: max(2, 40 at one thread) = 40 ms
    assert tuner.decided == Plan(16, 0, 2)


def test_channels_last_is_measured_and_kept_when_faster() -> None:
    times = {**quiet(), (16, 2, True): 15.0, (16, 1, True): 24.0, (32, 2, True): 15.0}
    tuner = Tuner("cpu", 1000, cores=2, channels_last=True)
    assert probes(tuner, times) == [
        Plan(8, 0, 2, False),  # warm-up
        Plan(8, 0, 2, False),  # the threads, in the model's own layout
        Plan(8, 0, 1, False),
        Plan(8, 0, 2, True),  # warm-up, then both layouts twice at the threads kept (the
        Plan(8, 0, 2, True),  # model's own layout at 2 threads was measured above)
        Plan(8, 0, 2, False),
        Plan(8, 0, 2, True),
        Plan(16, 0, 2, True),  # the batch in the faster layout
        Plan(32, 0, 2, True),
    ]
    assert tuner.decided == Plan(16, 0, 2, True)
    slower = {**times, (16, 2, True): 24.5}  # within 3%: the model's own layout stays
    assert (
        measure(Tuner("cpu", 1000, cores=2, channels_last=True), 2.0, slower).channels_last is False
    )


def test_a_model_that_cannot_run_channels_last_is_not_probed_in_it() -> None:
    tuner = Tuner("cpu", 110, cores=2, channels_last=True)
    assert tuner.skipped == "too few inputs"  # 104 probe images with both layouts, then 16
    tuner.forbid_channels_last("its outputs differ in channels-last")
    assert tuner.skipped is None  # 72 without, then 16
    assert all(not p.channels_last for p in probes(tuner, quiet()))
    assert tuner.report()["why"][0] == "default layout: its outputs differ in channels-last"


def test_another_process_on_a_core_gives_one_thread() -> None:
    busy = {**quiet(), (16, 2, False): 120.0, (32, 1, False): 39.0}  # 2 threads collapse
    plan = measure(Tuner("cpu", 1000, cores=2), 2.0, busy)
    assert plan == Plan(16, 0, 1)  # and no decode worker to compete for the free core
    # the layout is then measured at one thread, where the collapse does not drown it
    busy_cl = {**busy, (16, 1, True): 22.0, (32, 1, True): 22.0}
    tuner = Tuner("cpu", 1000, cores=2, channels_last=True)
    assert measure(tuner, 2.0, busy_cl) == Plan(16, 0, 1, True)
    assert [(p.plan.threads, p.plan.channels_last) for p in tuner.measured][3:] == [
        (1, True),
        (1, True),
        (1, False),
        (1, True),
        (1, True),
        (1, True),
    ]
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
    eight = {(16, 7, False): 8.0, (16, 8, False): 7.0, (32, 8, False): 7.0}
    assert measure(Tuner("cpu", 1000, cores=8), 30.0, eight) == Plan(16, 3, 5)


def test_what_the_caller_set_is_kept_and_not_probed() -> None:
    fixed = Tuner("cpu", 1000, cores=2, batch_size=8, decode_workers=0, threads=2)
    assert fixed.next_probe() is None and fixed.decide() == Plan(8, 0, 2)
    assert fixed.report()["why"] == ["no probes: set by the caller"]
    batch_only = Tuner("cpu", 1000, cores=2, batch_size=4)
    assert probes(batch_only, {(4, 2, False): 25.0, (4, 1, False): 40.0}) == [
        Plan(4, 0, 2),  # warm-up
        Plan(4, 0, 2),
        Plan(4, 0, 1),
    ]
    assert batch_only.decided == Plan(4, 0, 2)
    threads_only = Tuner("cpu", 1000, cores=2, threads=1)
    heavy = {(16, 1, False): 40.0, (32, 1, False): 40.0}
    # the caller's one thread leaves one core free: a worker fits beside it when decoding costs
    assert measure(threads_only, 30.0, heavy) == Plan(16, 1, 1)
    assert {p.plan.threads for p in threads_only.measured} == {1}


def test_a_probe_whose_inputs_all_failed_runs_again() -> None:
    tuner = Tuner("cpu", 1000, cores=2)
    warm = tuner.next_probe()
    assert warm is not None
    tuner.record(warm, 0, 0.0, 0.001)  # nothing decoded: no time per image to learn from
    assert tuner.next_probe() == warm and tuner.measured == []


def test_the_callers_decode_workers_keep_their_cores() -> None:
    # the probes decode in this process, so 2 threads measure fastest; beside the caller's two
    # decoding processes the model gets the 6 cores they leave
    tuner = Tuner("cpu", 1000, cores=8, decode_workers=2)
    eight = {(16, 7, False): 8.0, (16, 8, False): 7.0, (32, 8, False): 7.0}
    assert measure(tuner, 2.0, eight) == Plan(16, 2, 6)
    assert Tuner("cpu", 10, cores=8, decode_workers=2).decide().threads == 6  # no probes


def test_too_few_inputs_skip_the_probes() -> None:
    tuner = Tuner("cpu", 87, cores=2)  # the probes would take 72 of 87, leaving no batch of 16
    assert Tuner("cpu", 88, cores=2).skipped is None
    assert tuner.next_probe() is None and tuner.decide() == Plan(16, 0, 2)
    assert tuner.report()["why"] == ["no probes: too few inputs"]


def test_a_gpu_takes_the_smallest_batch_near_the_fastest_and_enough_workers() -> None:
    tuner = Tuner("cuda", 10_000, cores=16)
    per_image = {(32, None, False): 2.0, (64, None, False): 1.2, (128, None, False): 1.15}
    # batch 64: 1.2 ms is within 5% of 1.15; decoding 5 ms per image needs 5 workers for
    # max(5/w, 1.2) to reach 1.2 ms, and 4 (1.25 ms) are within 5% of it
    assert measure(tuner, 5.0, per_image) == Plan(64, 4, None)
    assert [p.plan.batch_size for p in tuner.measured] == [32, 32, 64, 128]
    tuner = Tuner("cuda", 10_000, cores=16, channels_last=True)
    faster = {**per_image, (32, None, True): 1.5, (64, None, True): 1.0, (128, None, True): 0.99}
    assert measure(tuner, 0.5, faster) == Plan(64, 1, None, True)
    assert [(p.plan.batch_size, p.plan.channels_last) for p in tuner.measured] == [
        (32, False),
        (32, False),
        (32, True),
        (32, True),
        (32, False),
        (32, True),
        (64, True),
        (128, True),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_recheck_switches_threads_only_when_the_other_count_is_faster() -> None:
    clock = Clock()
    tuner = Tuner("cpu", 10_000, cores=2, clock=clock)
    assert measure(tuner, 2.0, quiet()) == Plan(16, 0, 2)
    with pytest.raises(RuntimeError, match="decide"):
        Tuner("cpu", 10).threads_for_next_batch()
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


def test_a_job_probes_then_runs_its_plan_and_gives_back_threads_and_weights(
    image_folder: Path, tmp_path: Path
) -> None:
    model, spec = load_model(MODEL)
    weights = [(p, p.data_ptr(), p.stride(), p.detach().clone()) for p in model.parameters()]
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    seen: list[int] = []
    # batch 1 given: the probes are single images (warm-ups, threads, layouts): 7 of the 24
    # inputs (every file twice, under two ids)
    files = sorted(p for p in image_folder.rglob("*") if p.is_file())
    listing = tmp_path / "list.csv"
    rows = [f"{f},{k}-{f.name}\n" for k in (1, 2) for f in files]
    listing.write_text("path,id\n" + "".join(rows))
    out = tmp_path / "out"
    job = DatasetJob(listing, out, model=ModelRecipe(MODEL), batch_size=1)
    try:
        result = run_dataset_job(
            job, progress=lambda done, total: seen.append(done), loaded=(model, spec)
        )
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    tuning = result.summary["this_run"]["tuning"]
    c = available_cores()
    got = [
        (p["batch_size"], p["threads"], p["channels_last"], p["warm_up"]) for p in tuning["probes"]
    ]
    # warm-up, the threads in the model's layout, then channels-last (the test model runs in it
    # too) at the threads kept (c or c - 1, whichever was faster on this machine now)
    expected = [(1, c, False, True), (1, c, False, False)]
    expected += [(1, c - 1, False, False)] if c > 1 else []
    t = got[len(expected)][1]
    expected += [(1, t, True, True), (1, t, True, False), (1, t, False, False), (1, t, True, False)]
    assert t in (c, c - 1)
    assert got == expected and {p["images"] for p in tuning["probes"]} == {1}
    decided = tuning["decided"]
    # decode workers take their cores from the threads kept
    assert decided["batch_size"] == 1 and decided["threads"] == min(
        t, c - decided["decode_workers"]
    )
    assert result.summary["this_run"]["torch_threads"] == tuning["decided"]["threads"]
    assert seen[-1] == 2 * (GOOD + 3) and len(open_maps(out).ids()) == 2 * GOOD
    # the very tensors it had, unchanged, whatever layout the job ran in
    for p, pointer, stride, copy in weights:
        assert (p.data_ptr(), p.stride()) == (pointer, stride) and torch.equal(p, copy)

"""Running sweeps with a stand-in for train_run: skipping, --force, config mismatches, failures, shards, locks."""

import json
import os
import subprocess
import sys
import threading

import pytest
import yaml

from mile.engine.rundir import RunDir
from mile.sweep import SweepError, load_sweep, parse_shard, run_sweep, select_shard
from mile.sweep.lock import RunLock
from mile.sweep.runner import LOCKS, RECORD, run_one

GRID = {"grid": {"plan": ["F-LoRA_r4-LoRA_r4", "T-T-T", "F-F-PTV2"], "train.seed": [1, 2]}}


def quiet(_):
    pass


def records(sweep):
    return [json.loads(line) for line in (sweep.output_dir / RECORD).read_text().splitlines()]


def test_done_runs_are_skipped_and_force_redoes_them_from_scratch(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    train = fake_train()
    first = run_sweep(sweep, train=train, echo=quiet)
    assert first.count("trained") == 6 and len(train.calls) == 6
    assert sorted(train.calls) == sorted(r.name for r in sweep.runs)
    again = run_sweep(sweep, train=train, echo=quiet)
    assert again.count("skipped") == 6 and len(train.calls) == 6
    leftover = sweep.run_dir(sweep.runs[0]) / "stale-file"
    leftover.write_text("x")
    forced = run_sweep(sweep, train=train, echo=quiet, force=True)
    assert forced.count("trained") == 6 and len(train.calls) == 12
    assert not leftover.exists()  # --force starts over in an emptied directory
    assert [r["state"] for r in records(sweep)] == ["trained"] * 6 + ["skipped"] * 6 + ["trained"] * 6


def test_unfinished_runs_are_retried_with_resume(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    run_sweep(sweep, train=fake_train(), echo=quiet)
    sweep.run_dir(sweep.runs[2]).joinpath("status.json").write_text('{"state": "running"}')
    train = fake_train()  # asserts resume=True
    summary = run_sweep(sweep, train=train, echo=quiet)
    assert train.calls == [sweep.runs[2].name] and summary.count("skipped") == 5


def test_a_run_directory_with_another_config_is_an_error_naming_it(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    run_sweep(sweep, train=fake_train(), echo=quiet)
    victim = sweep.runs[3]
    file = sweep.run_dir(victim) / "config.yaml"
    data = yaml.safe_load(file.read_text())
    data["train"]["lr"] = 0.123
    file.write_text(yaml.safe_dump(data))
    train = fake_train()
    with pytest.raises(SweepError) as err:
        run_sweep(sweep, train=train, echo=quiet)
    assert (
        victim.name in str(err.value)
        and "train.lr (run: 0.123" in str(err.value)
        and "force a retrain from scratch" in str(err.value)  # the library names no CLI flag
    )
    with pytest.raises(SweepError, match="use --force"):
        run_sweep(sweep, train=train, echo=quiet, way_out="use --force")  # a front end's own words
    assert train.calls == []  # refused before anything trained
    run_sweep(sweep, train=train, echo=quiet, force=True)
    assert yaml.safe_load(file.read_text())["train"]["lr"] != 0.123


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    bad = sweep.runs[1].name
    lines = []
    summary = run_sweep(sweep, train=fake_train(fail=(bad,)), echo=lines.append)
    assert summary.count("failed") == 1 and summary.count("trained") == 5
    status = json.loads((sweep.run_dir(sweep.runs[1]) / "status.json").read_text())
    assert status["state"] == "failed" and f"RuntimeError: boom in {bad}" in status["error"]
    assert "Traceback" in (sweep.run_dir(sweep.runs[1]) / "log.txt").read_text()
    assert (sweep.run_dir(sweep.runs[1]) / "config.yaml").is_file()
    failed = [r for r in records(sweep) if r["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["run"] == bad and "boom" in failed[0]["error"]
    assert any(line.startswith("[2/6]") and "FAILED" in line for line in lines)
    assert "5 trained, 0 skipped (already done), 1 failed" in lines[-1] and bad in lines[-1]


@pytest.mark.parametrize(
    ("text", "parts"), [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3)), (None, (1, 1))]
)
def test_parse_shard(text, parts):
    assert parse_shard(text) == parts


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shards_are_user_errors(text):
    with pytest.raises(SweepError, match="i/n"):
        parse_shard(text)


def test_shards_cover_every_run_exactly_once(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    assert [r.index for r in select_shard(sweep.runs, (2, 4))] == [2, 6]
    train = fake_train()
    for i in (1, 2, 3):
        run_sweep(sweep, shard=(i, 3), train=train, echo=quiet)
    assert sorted(train.calls) == sorted(r.name for r in sweep.runs)


def test_only_trains_the_matching_plans_in_sweep_order(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    train = fake_train()
    summary = run_sweep(sweep, train=train, echo=quiet, only=["F-*"])
    assert [o.run.plan for o in summary.outcomes] == ["F-LoRA_r4-LoRA_r4"] * 2 + ["F-F-PTV2"] * 2
    by_name = run_sweep(sweep, train=train, echo=quiet, only=[sweep.runs[2].name], shard=(1, 2))
    assert [o.run.name for o in by_name.outcomes] == [sweep.runs[2].name] and len(train.calls) == 5


def test_only_pattern_matching_nothing_is_an_error_listing_the_plans(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    with pytest.raises(SweepError, match=r"^only X-\*: matches no run .*T-T-T"):
        run_sweep(sweep, train=fake_train(), echo=quiet, only=["T-*", "X-*"])


def test_concurrent_sweeps_never_run_the_same_run_twice(make_sweep, fake_train):
    sweep = load_sweep(make_sweep(GRID))
    train = fake_train(delay=0.05)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(run_sweep(sweep, train=train, echo=quiet)))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(train.calls) == sorted(r.name for r in sweep.runs)  # each exactly once
    assert sum(s.count("trained") for s in results) == 6
    assert not list((sweep.output_dir / LOCKS).iterdir())  # every lock released


def test_a_live_lock_is_respected_and_a_dead_ones_taken_over(make_sweep, fake_train):
    sweep = load_sweep(make_sweep({"grid": {"plan": ["T-T-T", "F-F-PTV2"]}}))
    held = RunLock(sweep.output_dir / LOCKS / f"{sweep.runs[0].hash}.lock")
    assert held.acquire()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = sweep.output_dir / LOCKS / f"{sweep.runs[1].hash}.lock"
    stale.write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "token": "old"}))
    train = fake_train()
    summary = run_sweep(sweep, train=train, echo=quiet)
    held.release()
    assert [o.state for o in summary.outcomes] == ["locked", "trained"]
    assert "locked by" in summary.outcomes[0].error and train.calls == [sweep.runs[1].name]
    assert run_sweep(sweep, train=train, echo=quiet).count("trained") == 1  # released: now it runs


def test_lock_files(tmp_path):
    path = tmp_path / "x.lock"
    a, b = RunLock(path, heartbeat=0.02), RunLock(path)
    assert a.acquire() and not b.acquire()
    os.utime(path, (0, 0))
    threading.Event().wait(0.2)
    assert path.stat().st_mtime > 0  # the heartbeat keeps it fresh
    a.release()
    assert not path.exists() and b.acquire()
    b.release()
    path.write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t"}))
    assert not RunLock(path, stale_after=60).acquire()  # another host, recently touched: alive
    os.utime(path, (0, 0))
    c = RunLock(path, stale_after=60)
    assert c.acquire() and json.loads(path.read_text())["token"] == c.token  # untouched for ages: taken over
    c.release()


def test_a_requeued_slurm_job_takes_over_the_fresh_lock_of_its_earlier_start(tmp_path, monkeypatch):
    path = tmp_path / "x.lock"
    path.write_text(
        json.dumps({"host": "node7", "pid": 1234, "token": "t", "job": "4242"})
    )  # preempted there
    monkeypatch.setenv("SLURM_JOB_ID", "4243")
    assert not RunLock(path).acquire()  # another job's fresh lock: alive
    monkeypatch.setenv("SLURM_JOB_ID", "4242")  # the same job, requeued onto this node
    lock = RunLock(path)
    assert lock.acquire() and json.loads(path.read_text())["job"] == "4242"
    assert not RunLock(path).acquire()  # but never its own, held by this very process
    lock.release()


def test_taking_over_never_steals_a_fresh_lock(tmp_path):
    path = tmp_path / "x.lock"
    fresh = RunLock(path)
    assert fresh.acquire()
    late = RunLock(path)
    late._take_over({"token": "the-stale-one-someone-else-already-replaced"})
    assert json.loads(path.read_text())["token"] == fresh.token  # put back
    assert [p.name for p in tmp_path.iterdir()] == ["x.lock"]
    fresh.release()


def test_a_grown_grid_finds_its_runs_under_their_older_names(make_sweep, fake_train):
    sweep = load_sweep(make_sweep({"grid": {"plan": ["T-T-T", "F-F-PTV2"], "train.seed": [1]}}))
    run_sweep(sweep, train=fake_train(), echo=quiet)
    grown = load_sweep(make_sweep({"grid": {"plan": ["T-T-T", "F-F-PTV2"], "train.seed": [1, 2]}}))
    assert grown.runs[0].name != sweep.runs[0].name and grown.runs[0].hash == sweep.runs[0].hash
    train = fake_train()
    summary = run_sweep(grown, train=train, echo=quiet)
    assert summary.count("skipped") == 2 and sorted(train.calls) == sorted(
        [grown.runs[1].name, grown.runs[3].name]
    )


def test_missing_initial_weights_stop_the_sweep_before_it_starts(make_sweep, fake_train):
    path = make_sweep(
        {"overrides": {"model.init": {"kind": "mile", "path": "PLACEHOLDER"}}, "grid": {"plan": ["T-T-T"]}}
    )
    train = fake_train()
    with pytest.raises(SweepError, match="model.init.path=PLACEHOLDER"):
        run_sweep(load_sweep(path), train=train, echo=quiet)
    assert train.calls == []


def test_a_config_changed_while_waiting_for_the_lock_fails_that_run(make_sweep, fake_train):
    sweep = load_sweep(make_sweep({"grid": {"plan": ["T-T-T"]}}))
    run = sweep.runs[0]
    other = load_sweep(make_sweep({"overrides": {"train.lr": 0.5}, "grid": {"plan": ["T-T-T"]}})).runs[0]
    RunDir(sweep.run_dir(run)).create(other.config)  # another sweep wrote it after check_existing
    train = fake_train()
    outcome = run_one(sweep, run, force=False, train=train)
    assert outcome.state == "failed" and train.calls == []
    assert "train.lr (run: 0.5" in outcome.error and "force a retrain" in outcome.error

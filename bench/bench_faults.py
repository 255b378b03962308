"""Fault injection: ``kill -9`` of every part of running campaigns, at random moments; what survives and how fast
the campaign goes on.

Usage (from the repository root)::

    .venv/bin/python bench/bench_faults.py                                   # 50 injections, seed 11
    .venv/bin/python bench/bench_faults.py --injections 60 --seed 3 --out /tmp/faults.json

``tests/test_faults.py`` runs it small (a dozen injections, a fixed seed) and asserts the targets; nothing here
asserts a timing.

Campaigns of two chained stages (random sweeps of ``tests/scripts/curve.py``, a real wandb script run offline) run
one after another in a fresh ``SWEEPFLOW_HOME`` with the production lease TTL (30 s), in one of three shapes:

* ``flow``: a campaign process (``bench/_campaign_runner.py``: launch each stage under its key, then wait on it as
  ``tasks/wait_for_sweep.py`` does, keeping it driven) and the detached controllers it starts;
* ``agent``: the same, its runs served by an external ``sweepflow launch-agent`` on the campaign's queue;
* ``cli``: each stage run by ``sweepflow launch-sweep --wait``.

Faults are drawn from a seeded generator: the moment (0.2 to ``--span`` s after the campaign's first run started,
then after the previous fault's recovery, so each hits a campaign at work) and the part killed among those alive
then: the controller (in the cli shape, once the command's standby has taken the sweep over), the external
agent, the campaign process, ``launch-sweep --wait``, a training run. Each is recovered the documented way: a dead
controller is taken over by its standby or replaced by the campaign's sensor (``ensure_driven``),
a dead agent's runs are re-queued and its queue served by the controller until the agent is restarted, a killed
campaign process is run again with the same key, a killed ``launch-sweep --wait`` is run again with
``--resume_id ID --wait``, and a killed training run is ``crashed`` and counts (as in W&B).

Reported (targets in brackets): duplicate runs [0], finished runs lost, i.e. run logs holding a clean exit
record whose run is not recorded finished [0], sweeps over ``run_cap`` [0], runs re-queued (and given up after
``lost_run_retries``), campaigns completed [all], sweeps short of ``run_cap`` finished runs other than by a killed
training run or a run given up [0], store integrity problems [none], and the recovery time [p50 / max <= 5 s]: from
the kill, or if the kill stopped no run and every slot was busy, from the first run then running ending on its
own (the next run could not start sooner: a kill of a campaign process, of a controller whose runs an external
agent serves, of a watching ``launch-sweep --wait``, costs only what it delays that start), to the next run of
the sweep it hit started. A kill at a stage's end is followed by the next stage's start-up, reported apart; a kill
in a stage's start-up (its sweep created, no run of it yet: the campaign process re-run then launches it again)
is reported in the recovery and also left out of it beside the stage start-up it delayed, as stage start-ups
are slow on their own (a controller process's start and first decision: seconds on a loaded box). Each
fault's timeline is in the JSON (runs at the kill, slot free, next run queued and started, driver kept or new);
the five slowest are printed. Plus the load average and the CPU other processes used meanwhile (the machine is
shared: say so with the figures).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, CpuSampler, dist, fmt, machine

CURVE = ROOT / "tests" / "scripts" / "curve.py"
RUNNER = Path(__file__).resolve().parent / "_campaign_runner.py"
SHAPES = ("flow", "agent", "cli")
CAMPAIGN_TIMEOUT_S = 300.0
WORKERS = 2  # num_workers of every stage
LEFTOVER_GRACE_S = 10.0  # after the last campaign: a process alive this long after it is left behind


@dataclass
class Fault:
    campaign: str
    part: str
    at: float  # wall clock of the kill
    pid: int
    sweep: str | None = None  # the campaign's sweep running at the kill
    recovered_at: float | None = None  # when the campaign's next run started
    next_stage: bool = False  # that run was of a later stage: the kill fell at a stage's end
    undisturbed: bool = False  # a campaign process killed while a live controller elsewhere drove its sweep
    note: str = ""
    # The timeline of its recovery: whose lease the sweep was under at the kill and after it, and the next run's
    # queuing (before the kill: it waited for a slot or a claim; after: for a controller to queue it).
    driver_before: int | None = None
    driver_after: int | None = None
    next_queued_at: float | None = None
    runs_at_kill: str = ""  # the sweep's runs at the kill: number and state letter (p pending, r running, ...)
    running: dict[str, int] = field(default_factory=dict)  # the sweep's running runs at the kill: id -> attempt
    waited_from: float | None = None  # when a slot was free after the kill (see Bench.recoveries)


@dataclass
class Campaign:
    name: str
    shape: str
    configs: list[Path]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None  # the campaign process, or the stage's launch-sweep --wait
    agent: subprocess.Popen[bytes] | None = None
    stage: int = 0
    sweep_ids: list[str] = field(default_factory=list)
    moments: list[float] = field(default_factory=list)  # when to inject faults (seconds after the anchor)
    first_run: float | None = None  # when its first run started
    started: float = 0.0
    ended: float | None = None

    def spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            return subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def stage_config(campaign: str, stage: int, shape: str, runs: int, epochs: int) -> dict[str, Any]:
    return {
        "method": "random",
        "program": str(CURVE),
        "project": f"{campaign}-stage{stage}",
        "metric": {"name": "loss", "goal": "minimize"},
        "run_cap": runs,
        "scheduler": {"num_workers": WORKERS},
        "parameters": {"quality": {"min": 0.5, "max": 2.0}, "epochs": {"value": epochs}, "sleep": {"value": 0.25}},
        **({"queue": f"q-{campaign}"} if shape == "agent" else {}),
    }


class Bench:
    def __init__(self, home: Path, args: argparse.Namespace):
        from sweepflow.store import get_store

        self.home = home
        self.args = args
        self.rng = random.Random(args.seed)
        self.env = {
            **os.environ,
            "SWEEPFLOW_HOME": str(home),
            "SWEEPFLOW_LEASE_TTL": str(args.lease_ttl),
            "SWEEPFLOW_STOP_GRACE": "5",
            "PYTHONPATH": str(ROOT),
        }
        self.store = get_store(f"sqlite:///{home / 'sweepflow.db'}")
        self.faults: list[Fault] = []
        self.load: list[float] = []

    # -- processes ----------------------------------------------------------------------------------------------

    def sweepflow(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "sweepflow", *argv]

    def start_stage(self, c: Campaign, resume_id: str | None = None) -> None:
        if c.shape == "cli":
            argv = ["--resume_id", resume_id] if resume_id else [str(c.configs[c.stage])]
            c.process = c.spawn(self.sweepflow("launch-sweep", *argv, "--wait"))
        else:
            c.process = c.spawn([sys.executable, str(RUNNER), c.name, *map(str, c.configs)])

    def start_agent(self, c: Campaign) -> None:
        c.agent = c.spawn(self.sweepflow("launch-agent", "--queue", f"q-{c.name}", "--max-jobs", "2"))

    def sweeps_of(self, c: Campaign) -> list[Any]:
        found = [self.store.find_sweep(f"{c.name}/stage{i}") for i in range(len(c.configs))]
        if c.shape == "cli":
            found = [
                next(iter(self.store.list_sweeps(project=f"{c.name}-stage{i}")), None) for i in range(len(c.configs))
            ]
        return [s for s in found if s is not None]

    def current_sweep(self, c: Campaign) -> Any | None:
        live = [s for s in self.sweeps_of(c) if not s.state.is_terminal]
        return live[0] if live else None

    def run_pids(self, c: Campaign) -> list[int]:
        """Training-run processes of the campaign (their environment names one of its running runs)."""
        running = {r.id for s in self.sweeps_of(c) for r in self.store.runs(s.id, states=["running"])}
        pids = []
        for pid, (cmdline, env) in _processes_of(self.home).items():
            ids = [e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"WANDB_RUN_ID=")]
            if str(CURVE) in cmdline and ids and ids[0] in running:
                pids.append(pid)
        return pids

    def targets(self, c: Campaign) -> dict[str, int]:
        """The parts of the campaign alive now, by name -> pid."""
        alive: dict[str, int] = {}
        if c.process is not None and c.process.poll() is None:
            alive["launch-sweep" if c.shape == "cli" else "campaign"] = c.process.pid
        if c.agent is not None and c.agent.poll() is None:
            alive["agent"] = c.agent.pid
        sweep = self.current_sweep(c)
        if sweep is not None and sweep.lease_owner:
            pid = int(sweep.lease_owner.split(":")[1])
            # In the cli shape the command drives its sweep, until its standby (a detached controller) took over.
            if not _gone(pid) and pid != alive.get("launch-sweep"):
                alive["controller"] = pid
        runs = self.run_pids(c)
        if runs:
            alive["run"] = self.rng.choice(runs)
        return alive

    # -- one campaign ---------------------------------------------------------------------------------------------

    def begin(self, number: int, injections: int) -> Campaign:
        name = f"c{number}"
        shape = self.args.shapes[number % len(self.args.shapes)]
        configs = []
        for stage in range(self.args.stages):
            path = self.home / f"{name}-stage{stage}.json"
            path.write_text(json.dumps(stage_config(name, stage, shape, self.args.runs, self.args.epochs)))
            configs.append(path)
        c = Campaign(name, shape, configs, self.env, self.home / f"{name}.log")
        c.moments = [self.rng.uniform(0.2, self.args.span) for _ in range(injections)]
        c.started = time.time()
        if shape == "agent":
            self.start_agent(c)
        self.start_stage(c)
        return c

    def step(self, c: Campaign) -> bool:
        """One look at a running campaign: inject a fault if one is due, move it on; True once it has ended."""
        now = time.time()
        self.recoveries(c)
        if c.moments and (anchor := self.anchor(c)) is not None and now - anchor >= c.moments[0]:
            alive = self.targets(c)
            if alive:
                c.moments.pop(0)
                part = self.rng.choice(sorted(alive))
                self.kill(c, part, alive[part])
        if not self.advance(c) and now - c.started < CAMPAIGN_TIMEOUT_S:
            return False
        c.ended = time.time()
        self.recoveries(c)
        for fault in self.faults:
            if fault.campaign == c.name and fault.recovered_at is None:
                fault.note = fault.note or "no run started after it (the campaign had none left to start)"
        self.settle(c)
        return True

    def kill(self, c: Campaign, part: str, pid: int) -> None:
        before = self.current_sweep(c)
        driver = int(before.lease_owner.split(":")[1]) if before and before.lease_owner else None
        at_kill = self.store.runs(before.id) if before else []
        runs = " ".join(f"{r.number}{r.state.value[0]}" for r in at_kill)
        # The moment is taken at the kill, not after it: the sweep's driver may start the next run (its
        # `started_at`) before a store read here returns, and that run is the recovery.
        fault = Fault(c.name, part, time.time(), pid, before.id if before else None, driver_before=driver)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        fault.runs_at_kill = runs
        fault.running = {r.id: r.attempt for r in at_kill if r.state.value == "running"}
        # A campaign process, or a `launch-sweep --wait` run again that watches the standby which took its sweep
        # over, runs no run and drives nothing while a detached controller holds the lease: its kill interrupts
        # nothing, and the next run starts when a slot frees on its own (the sweep's cadence).
        watcher = part in ("campaign", "launch-sweep")
        fault.undisturbed = watcher and driver is not None and driver != pid and not _gone(driver)
        self.faults.append(fault)
        # Recovered the documented way (see the module docstring); a dead controller is the sensor's to replace.
        if part == "agent":
            c.agent.wait()
            self.start_agent(c)
        elif part == "campaign":
            c.process.wait()
            self.start_stage(c)
        elif part == "launch-sweep":
            c.process.wait()
            self.advance(c)

    def advance(self, c: Campaign) -> bool:
        """Start the next stage when a ``cli`` stage's process is done; True once the campaign has ended."""
        if c.process is None or c.process.poll() is None:
            return False
        if c.shape == "cli":
            sweep = next(iter(self.store.list_sweeps(project=f"{c.name}-stage{c.stage}")), None)
            if sweep is None:  # killed before it created the sweep: launch it again
                self.start_stage(c)
                return False
            if not sweep.state.is_terminal:  # killed mid-stage: resume it
                self.start_stage(c, resume_id=sweep.id)
                return False
            c.stage += 1
            if c.stage < len(c.configs):
                self.start_stage(c)
                return False
        return True

    def anchor(self, c: Campaign) -> float | None:
        """What the next fault's moment counts from: the campaign's first run start, then the last fault's recovery
        (so each fault hits a campaign at work, and each recovery is measured alone), or with ``--overlap`` the last
        fault (faults may then fall into a recovery: more of them per minute); None while there is none."""
        mine = [f for f in self.faults if f.campaign == c.name]
        if mine and self.args.overlap:
            return mine[-1].at
        return mine[-1].recovered_at if mine else c.first_run

    def recoveries(self, c: Campaign) -> None:
        open_faults = [f for f in self.faults if f.campaign == c.name and f.recovered_at is None]
        if not open_faults and c.first_run is not None:
            return
        sweeps = self.sweeps_of(c)
        starts = sorted(
            (r.started_at, s.id, r.queued_at) for s in sweeps for r in self.store.runs(s.id) if r.started_at
        )
        c.first_run = starts[0][0] if starts else None
        owners = {s.id: s.lease_owner for s in sweeps}
        runs = {r.id: r for s in sweeps for r in self.store.runs(s.id)}
        for fault in open_faults:
            fault.waited_from = self.slot_free(fault, runs)
            fault.recovered_at, sweep, fault.next_queued_at = next(
                ((t, s, q) for t, s, q in starts if t > fault.at), (None, None, None)
            )
            fault.next_stage = sweep is not None and sweep != fault.sweep
            if fault.recovered_at is not None and owners.get(fault.sweep):
                fault.driver_after = int(owners[fault.sweep].split(":")[1])

    def slot_free(self, fault: Fault, runs: dict[str, Any]) -> float | None:
        """When the sweep first had a free slot after the kill: at the kill if the kill ended a run (the run itself,
        or those that died with their agent: they were re-queued or given up) or a slot was free already; else when
        the first run then running ended on its own. Its next run cannot start sooner: its recovery counts from
        then (a kill that stopped nothing costs only what it delays that start)."""
        died = fault.part == "run" or any(
            runs[i].attempt > tried or "agent lost" in str(runs[i].stop_reason) for i, tried in fault.running.items()
        )
        if died or len(fault.running) < WORKERS:
            return fault.at
        ends = [runs[i].ended_at for i in fault.running if runs[i].ended_at]
        return max(fault.at, min(ends)) if ends else None

    def settle(self, c: Campaign) -> None:
        """Stop what the campaign left running (its external agent), by pid."""
        if c.agent is not None and c.agent.poll() is None:
            c.agent.send_signal(signal.SIGINT)
            try:
                c.agent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                c.agent.kill()
        if c.process is not None and c.process.poll() is None:
            c.process.kill()
            c.process.wait()

    # -- the verdict --------------------------------------------------------------------------------------------

    def verdict(self, campaigns: list[Campaign]) -> dict[str, Any]:
        from sweepflow.local.txlog import RunLog

        run_kills = {f.campaign for f in self.faults if f.part == "run"}
        sweeps, duplicates, lost, over, requeued, short, unexplained, gave_up = [], 0, 0, 0, 0, 0, [], 0
        completed = 0
        startup: list[float] = []  # stage start-ups no fault fell into
        hit_startup: list[float] = []
        for c in campaigns:
            stages = self.sweeps_of(c)
            ok = len(stages) == len(c.configs)
            for s in stages:
                runs = self.store.runs(s.id)
                configs = {json.dumps(r.config, sort_keys=True) for r in runs}
                duplicates += len(runs) - len(configs)
                over += s.run_cap is not None and len(runs) > s.run_cap
                requeued += sum(r.attempt - 1 for r in runs)
                finished = sum(r.state.value == "finished" for r in runs)
                for r in runs:
                    clean = 0
                    for path in (self.home / "runs" / s.id / r.id).glob(f"wandb*/*run-*-{r.id}/run-{r.id}.wandb"):
                        with contextlib.suppress(Exception):
                            clean += RunLog.read(path).exit_code == 0
                    lost += max(0, clean - (r.state.value == "finished"))
                # Why a sweep may end short of run_cap finished runs: a training run killed itself (crashed, it
                # counts, as in W&B), or a run lost with its agent more often than it may be re-queued.
                killed = [r for r in runs if r.state.value == "crashed" and "agent lost" not in str(r.stop_reason)]
                given_up = [r for r in runs if r.state.value == "crashed" and "agent lost" in str(r.stop_reason)]
                gave_up += len(given_up)
                if finished < (s.run_cap or 0):
                    short += 1
                    explained = len(killed) * (c.name in run_kills) + len(given_up)
                    if finished + explained < s.run_cap:
                        unexplained.append(f"{c.name} sweep {s.id}: {finished}/{s.run_cap} finished, {s.state_reason}")
                ok = ok and s.state.value == "finished" and len(runs) == s.run_cap
                # Its start-up (created -> first run started: a controller process's start and first decision),
                # apart for the stages a fault fell into (a kill before the sweep had a run).
                if first := min((r.started_at for r in runs if r.started_at), default=None):
                    hit = any(f.sweep == s.id and f.at < first for f in self.faults)
                    (hit_startup if hit else startup).append(first - s.created_at)
                sweeps.append(
                    {
                        "campaign": c.name,
                        "shape": c.shape,
                        "sweep": s.id,
                        "state": s.state.value,
                        "reason": s.state_reason,
                        "runs": len(runs),
                        "finished": finished,
                        "run_ends": [
                            {"state": r.state.value, "attempt": r.attempt, "reason": r.stop_reason} for r in runs
                        ],
                    }
                )
            completed += ok
        # Recovery within the sweep the kill hit, from the moment a slot was free (Bench.slot_free); a kill at a
        # stage's end is followed by the next stage's start-up (the campaign's sensor launches it), reported apart.
        within = [f for f in self.faults if f.recovered_at and f.waited_from and not f.next_stage]
        recovery = [_recovery(f) for f in within]
        parts = sorted({f.part for f in self.faults})
        by_part = {part: dist([_recovery(f) for f in within if f.part == part]) for part in parts}
        boundary = [f.recovered_at - f.at for f in self.faults if f.next_stage]
        return {
            "injections": len(self.faults),
            "by_part": {p: sum(f.part == p for f in self.faults) for p in sorted({f.part for f in self.faults})},
            "duplicates": duplicates,
            "finished_runs_lost": lost,
            "run_cap_exceeded": over,
            "runs_requeued": requeued,
            "runs_given_up": gave_up,  # lost with their agent lost_run_retries + 1 times: they end crashed
            "campaigns": len(campaigns),
            "campaigns_completed": completed,
            "sweeps_short_of_run_cap": short,
            "sweeps_short_unexplained": unexplained,
            "store_problems": self.store.check(),
            "recovery_s": dist(recovery),
            "recovery_s_by_part": by_part,
            "recovery_s_at_stage_end": dist(boundary),
            "recovery_s_outside_startups": dist([_recovery(f) for f in within if not _in_startup(f)]),
            "stage_startup_s": dist(startup),
            "stage_startup_s_with_a_kill_in_it": dist(hit_startup),
            "kill_to_next_run_s": dist([f.recovered_at - f.at for f in within]),
            "faults": [
                {
                    "campaign": f.campaign,
                    "part": f.part,
                    "at_s": round(f.at - next(c.started for c in campaigns if c.name == f.campaign), 2),
                    "recovery_s": None if f not in within else round(_recovery(f), 3),
                    "slot_free_s": None if f.waited_from is None else round(f.waited_from - f.at, 3),
                    "next_run_started_s": None if f.recovered_at is None else round(f.recovered_at - f.at, 3),
                    "next_run_queued_s": None if f.next_queued_at is None else round(f.next_queued_at - f.at, 3),
                    "driver": _driver_change(f),
                    "runs_at_kill": f.runs_at_kill,
                    "next_stage": f.next_stage,
                    "undisturbed": f.undisturbed,
                    "note": f.note,
                }
                for f in self.faults
            ],
            "sweeps": sweeps,
        }


def _recovery(f: Fault) -> float:
    """Seconds from a free slot after the kill to the next run's start (a run claimed in the tick that recorded
    the end of the one before it may carry the same timestamp, or a few ms less: never below 0)."""
    assert f.recovered_at is not None and f.waited_from is not None
    return max(0.0, f.recovered_at - f.waited_from)


def _in_startup(f: Fault) -> bool:
    """The kill fell into its sweep's start-up: no run of it had started (none queued, or all still pending)."""
    return all(run.endswith("p") for run in f.runs_at_kill.split())


def _driver_change(f: Fault) -> str | None:
    """Whether the sweep's driver at its recovery was the one at the kill ("same"), another ("new"), or unknown."""
    if f.driver_before is None or f.driver_after is None:
        return None
    return "same" if f.driver_after == f.driver_before else "new"


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _processes_of(home: Path) -> dict[int, tuple[str, list[bytes]]]:
    """pid -> (command line, environment) of the live processes, this one aside, whose environment names ``home``
    as their SWEEPFLOW_HOME: the bench's own parts, their runs and the runs' wandb-core."""
    marker = f"SWEEPFLOW_HOME={home}".encode()
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            env = Path(entry.path, "environ").read_bytes().split(b"\0")
            if marker in env:
                cmdline = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found[int(entry.name)] = (cmdline, env)
    return found


def _stop_leftovers(home: Path, grace: float = LEFTOVER_GRACE_S) -> list[str]:
    """Kill the processes this run left, by pid, and return their command lines. A process still ending when the
    last campaign ends (a standby controller sees its sweep done at its next look) has ``grace`` s to go."""
    deadline = time.monotonic() + grace
    while (left := _processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [f"{pid}: {cmd[:300]}" for pid, (cmd, _) in left.items()]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--injections", type=int, default=50)
    parser.add_argument("--per-campaign", type=int, default=4, help="faults injected into each campaign")
    parser.add_argument("--parallel", type=int, default=2, help="campaigns running at once")
    parser.add_argument("--overlap", action="store_true", help="count a fault's moment from the last fault's kill")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--no-top-up", dest="top_up", action="store_false", help="no extra campaign for faults a campaign ended before"
    )
    parser.add_argument("--runs", type=int, default=4, help="run_cap of each stage")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of each run (0.25 s each)")
    parser.add_argument("--stages", type=int, default=2, help="chained stages per campaign")
    parser.add_argument("--shapes", type=lambda v: v.split(","), default=list(SHAPES), help="e.g. flow,agent,cli")
    parser.add_argument(
        "--span", type=float, default=6.0, help="a fault comes up to this many s after the last one's recovery"
    )
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "faults_results.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary SWEEPFLOW_HOME (store, logs) to read")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    prefix = "sweepflow-faults-"
    kept = contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix)) if args.keep else None
    with kept or tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp) / "home"
        if args.keep:
            print(f"SWEEPFLOW_HOME kept: {home}")
        home.mkdir()
        bench = Bench(home, args)
        sampler = CpuSampler(f"SWEEPFLOW_HOME={home}")
        sampler.start()
        started = time.time()
        campaigns: list[Campaign] = []
        running: list[Campaign] = []
        planned = [args.per_campaign] * (args.injections // args.per_campaign)
        planned += [args.injections % args.per_campaign] if args.injections % args.per_campaign else []
        try:
            while planned or running:
                while planned and len(running) < args.parallel:
                    running.append(bench.begin(len(campaigns), planned.pop(0)))
                    campaigns.append(running[-1])
                for c in [c for c in running if bench.step(c)]:
                    running.remove(c)
                    bench.load.append(os.getloadavg()[0])
                    if c.moments and args.top_up:  # faults it never got (it ended first): to another campaign
                        planned.append(len(c.moments))
                time.sleep(0.05)
            result = bench.verdict(campaigns)
        finally:
            sampler.stop.set()
            leftovers = _stop_leftovers(home)
            bench.store.close()
        wall = time.time() - started
    result |= {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/bench_faults.py", *(argv if argv is not None else sys.argv[1:])]),
        "seed": args.seed,
        "lease_ttl_s": args.lease_ttl,
        "wall_s": wall,
        "load_avg_1min_at_each_campaign_end": bench.load,
        "processes_left_and_killed": len(leftovers),
        "processes_left": leftovers,
        "machine": machine(),
        **sampler.result(wall),
    }
    args.out.write_text(json.dumps(result, indent=2))
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    rec = r["recovery_s"]
    done = f"{r['campaigns_completed']}/{r['campaigns']}"
    print(f"injections {r['injections']} {r['by_part']}, campaigns {done} completed")
    print(
        f"duplicates {r['duplicates']}, finished runs lost {r['finished_runs_lost']}, run_cap exceeded "
        f"{r['run_cap_exceeded']}, runs re-queued {r['runs_requeued']} (given up {r['runs_given_up']}), "
        f"sweeps short {r['sweeps_short_of_run_cap']} "
        f"(unexplained {len(r['sweeps_short_unexplained'])}), store problems {len(r['store_problems'])}"
    )
    print(
        f"recovery (kill, or the first free slot after it -> next run of the sweep started): n={rec['n']} "
        f"p50 {fmt(rec.get('p50'), ' s', 2)}, "
        f"max {fmt(rec.get('max'), ' s', 2)}"
    )
    out = r["recovery_s_outside_startups"]
    print(
        f"  without kills in a stage's start-up (no run yet): n={out['n']} p50 {fmt(out.get('p50'), ' s', 2)}"
        f", max {fmt(out.get('max'), ' s', 2)}"
    )
    up, hit = r["stage_startup_s"], r["stage_startup_s_with_a_kill_in_it"]
    print(
        f"  stage start-up (sweep created -> first run started): p50 {fmt(up.get('p50'), ' s', 2)}, max "
        f"{fmt(up.get('max'), ' s', 2)} (n={up['n']}); with a kill in it: max {fmt(hit.get('max'), ' s', 2)} "
        f"(n={hit['n']})"
    )
    end = r["recovery_s_at_stage_end"]
    print(f"  at a stage's end (next stage's first run): n={end['n']} max {fmt(end.get('max'), ' s', 2)}")
    raw = r["kill_to_next_run_s"]
    print(
        f"  (kill -> next run started, slots busy or not: p50 {fmt(raw.get('p50'), ' s', 2)} "
        f"max {fmt(raw.get('max'), ' s', 2)})"
    )
    for part, d in r["recovery_s_by_part"].items():
        print(f"  {part:13s} n={d['n']:3d}  p50 {fmt(d.get('p50'), ' s', 2)}  max {fmt(d.get('max'), ' s', 2)}")
    print("  the 5 slowest (s after the kill: a slot free / next run queued / started; the driver after it):")
    timed = [f for f in r["faults"] if f["recovery_s"] is not None]
    for f in sorted(timed, key=lambda f: -f["recovery_s"])[:5]:
        print(
            f"    {f['campaign']:4s} {f['part']:13s} at {f['at_s']:7.2f}: free {f['slot_free_s']:.2f}, queued "
            f"{fmt(f['next_run_queued_s'], '', 2)}, started {f['next_run_started_s']:.2f}, driver {f['driver']}; "
            f"runs then: {f['runs_at_kill']}"
        )
    others = r["other_processes_cores_avg"] or 0.0
    print(f"load avg (1 min) {r['load_avg_1min_at_each_campaign_end']}, other processes {others:.2f} cores")


if __name__ == "__main__":
    main()

"""The driver side of a fault step of tests/test_ray_cluster.py, run as its own process (as a user's
script would be): joins the cluster at ``--address``, explores the demo model on two workers, and
mid-run either SIGKILLs the workers that run on the second node (``--fault sigkill``) or kills the
whole second node (``--fault node``), whose ``ray start`` process is ``--node-pid``. Writes one JSON
object to ``--out``: the history, the front, the executor's stats, the pids killed, and whether Ray is still
connected after the run.

A fresh process, because driven from a pytest-xdist worker that had run other tests, every worker of
the cluster died while setting up.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time

import psutil

import wsx
from wsx_plugins.executors.ray_executor import RayExecutor

SMALL = dict(strategy="divide-and-conquer", knobs=[2, 4, 8, 16], progress=False, seed=0, subset=None)


def node_pids(node_pid: int) -> set[int]:
    """Processes of the second node (its raylet's workers among them)."""
    try:
        return {p.pid for p in psutil.Process(node_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def when(executor: RayExecutor, chunks: int, action) -> threading.Thread:
    """``action`` run once the executor has scored ``chunks`` chunks (mid-run)."""
    def run():
        deadline = time.monotonic() + 120
        while executor.stats_["chunks"] < chunks and time.monotonic() < deadline:
            time.sleep(0.005)
        action()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--fault", choices=["sigkill", "node"], required=True)
    parser.add_argument("--node-pid", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import ray

    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    ex = RayExecutor(address=args.address, workers=2, chunk_size=2, start_timeout=600.0)
    killed: list[int] = []

    def sigkill():
        pids = node_pids(args.node_pid)
        for w in ex.pool_:
            if w.alive and w.info.get("pid") in pids:
                os.kill(w.info["pid"], signal.SIGKILL)
                killed.append(w.info["pid"])

    def node_lost():
        killed.append(args.node_pid)
        kill_tree(args.node_pid)

    t = when(ex, 4, sigkill if args.fault == "sigkill" else node_lost)
    got = wsx.explore(model, data, executor=ex, **SMALL)
    t.join()
    with open(args.out, "w") as f:
        json.dump({"history": [[c.knobs, c.accuracy] for c in got.history],
                   "front": [[c.knobs, c.accuracy, c.compression_rate] for c in got.front],
                   "executor": got.extras["executor"], "killed": killed,
                   "ray_initialized": ray.is_initialized()}, f)


if __name__ == "__main__":
    main()

"""The ray executor on a two-node cluster started as a user would: ``ray start --head`` and a second
``ray start --address`` on this machine. Exploration through the address (Python and ``wsx demo
--ray-address``), a worker of the second node SIGKILLed mid-run, then the whole second node lost: the
front stays the serial one. Every process the module starts is killed at its end.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import wsx

ray = pytest.importorskip("ray")
pytest.importorskip("psutil")  # a dependency of Ray; the driver kills processes with it
from _ray_cluster_driver import SMALL, kill_tree  # noqa: E402

pytestmark = pytest.mark.slow

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _agent_ports() -> list[str]:
    """Ports each node's agents take (two nodes on one machine must not share the defaults)."""
    return [f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
            f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}"]


def _clean_env() -> dict:
    """The environment a user's shell would give the cluster and the CLI: what earlier tests in this
    process set (threads, frameworks' settings, plugin paths) left out."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "VIRTUAL_ENV", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


class TwoNodes:
    def __init__(self, logs: str):
        self.temp = tempfile.mkdtemp(prefix="wsxray", dir="/tmp")  # Ray's socket paths must stay short
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # A cluster of this test only: no token (the driver connects by address), node death found in seconds
        # (Ray's default takes ~30 s), yet a raylet stalled a few seconds on a loaded machine stays alive
        # (with 0.5 s x 3 checks, workers died while starting when the whole suite ran beside).
        env = dict(_clean_env(), RAY_AUTH_MODE="disabled", RAY_health_check_period_ms="1000",
                   RAY_health_check_failure_threshold="5", RAY_health_check_timeout_ms="3000")
        common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--object-store-memory=80000000",
                  "--disable-usage-stats", "--block"]
        self.procs = []
        self.head = self._start([RAY, "start", "--head", f"--port={self.port}", "--include-dashboard=false",
                                 f"--temp-dir={self.temp}", f"--ray-client-server-port={_free_port()}",
                                 *_agent_ports(), *common], env, os.path.join(logs, "head.log"))
        self._wait(lambda: self._reachable(), "the head node")
        self.node = self._start([RAY, "start", f"--address={self.address}", *_agent_ports(), *common], env,
                                os.path.join(logs, "node.log"))
        ray.init(address=self.address, logging_level="ERROR")
        try:
            self._wait(lambda: sum(n["Alive"] for n in ray.nodes()) == 2, "the second node")
        finally:
            ray.shutdown()

    def _start(self, cmd, env, log):
        proc = subprocess.Popen(cmd, env=env, cwd=self.temp, start_new_session=True, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def _reachable(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _wait(self, ready, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                pytest.fail(f"{what} of the test cluster did not start")
            time.sleep(0.2)

    def worker_logs(self, chars: int = 3000) -> str:
        """The end of the cluster's worker error logs: why workers died, for a failing assertion."""
        import glob

        paths = sorted(glob.glob(os.path.join(self.temp, "session_*", "logs", "worker-*.err"))
                       + glob.glob(os.path.join(self.temp, "session_*", "logs", "raylet.out")), key=os.path.getmtime)
        text = "".join(f"\n== {p}\n" + open(p, errors="replace").read()[-600:] for p in paths[-6:])
        return text[-chars:]

    def stop(self) -> None:
        for proc in reversed(self.procs):
            kill_tree(proc.pid)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ray_turn):
    if ray.is_initialized():
        ray.shutdown()
    nodes = TwoNodes(str(tmp_path_factory.mktemp("ray_logs")))
    yield nodes
    nodes.stop()


def _front(result):
    return [(c.knobs, c.accuracy, c.compression_rate) for c in result.front]


def _history(result):
    return [(c.knobs, c.accuracy) for c in result.history]


@pytest.fixture(scope="module")
def serial():
    model, data = wsx.zoo.load("lenet5-digits", framework="torch")
    return wsx.explore(model, data, **SMALL)


def _drive(cluster, fault: str, tmp_path) -> dict:
    """A fault step's driver, run as its own process in a user's environment (tests/_ray_cluster_driver.py):
    driven from a pytest-xdist worker that had run other tests, every worker of the cluster died at setup."""
    out = tmp_path / f"{fault}.json"
    cmd = [sys.executable, os.path.join(os.path.dirname(__file__), "_ray_cluster_driver.py"), "--address",
           cluster.address, "--fault", fault, "--node-pid", str(cluster.node.pid), "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_clean_env())
    assert run.returncode == 0, run.stderr[-1500:] + cluster.worker_logs()
    return json.loads(out.read_text())


def _as_json(rows) -> list:
    return json.loads(json.dumps(rows))


def test_two_nodes_on_loopback(cluster, serial, tmp_path):
    """One test, in this order (pytest-xdist may spread a module's tests over its workers): the CLI
    through the address, a worker of the second node SIGKILLed mid-run, then the second node lost."""
    _demo_through_the_ray_address(cluster, serial, tmp_path)
    _a_worker_of_the_second_node_sigkilled_mid_run(cluster, serial, tmp_path)
    _the_second_node_lost_mid_run(cluster, serial, tmp_path)


def _a_worker_of_the_second_node_sigkilled_mid_run(cluster, serial, tmp_path):
    got = _drive(cluster, "sigkill", tmp_path)
    stats = got["executor"]
    assert got["killed"] and stats["lost_workers"] == 1 and stats["rescored_candidates"] > 0
    assert len({w["node"] for w in stats["workers"] if w["node"]}) == 2  # set up on both nodes
    assert got["history"] == _as_json(_history(serial)) and got["front"] == _as_json(_front(serial))
    assert not got["ray_initialized"]  # the executor disconnected from the cluster it joined


def _demo_through_the_ray_address(cluster, serial, tmp_path):
    cmd = [sys.executable, "-m", "wsx.cli", "demo", "--ray-address", cluster.address, "--workers", "2", "--json",
           "--knobs", "2,4,8,16", "--subset", "all"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_clean_env())
    assert out.returncode == 0, out.stderr[-1500:] + cluster.worker_logs()
    result = json.loads(out.stdout)
    assert [(c["knobs"], c["accuracy"], c["compression_rate"]) for c in result["front"]] == _front(serial)
    assert result["settings"]["config"]["executor"].startswith("ray:")
    assert len(result["extras"]["executor"]["workers"]) == 2


def _the_second_node_lost_mid_run(cluster, serial, tmp_path):
    """Last: the second node does not come back."""
    got = _drive(cluster, "node", tmp_path)
    stats = got["executor"]
    assert got["killed"] and stats["lost_workers"] >= 1 and stats["rescored_candidates"] > 0
    assert got["history"] == _as_json(_history(serial)) and got["front"] == _as_json(_front(serial))

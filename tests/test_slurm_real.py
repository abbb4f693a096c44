"""tools/slurm_vos_inference.sh on a real SLURM cluster that the test starts and stops.

The cluster: munged, slurmctld and two slurmd on this host (node1, node2, distinct ports),
each node with two fake GPUs (gres ``AutoDetect=off``, ``File=/dev/null,/dev/zero``: SLURM
hands out ``CUDA_VISIBLE_DEVICES`` exactly as for real GPUs).  The workers run the random
micro model on CPU (``--device cpu``) over six small videos.

Checked, with the job layouts people actually submit:

* ``--export=NONE`` (a common site default) with two tasks per node, GPUs given per node:
  every video exactly once, each task on its own GPU, labelled log lines;
* ``--array=0-1`` with two GPUs per task: one shard numbering over the array;
* the user's own ``srun`` with two tasks on a node, inside a batch script;
* ``--gpus-per-task=1``, ``scancel`` mid-run, resubmit: finished videos are skipped and the
  outputs are byte-identical to the uninterrupted run's.

It installs Debian's slurmctld, slurmd, slurm-client and munge when they are missing and it
may (root with apt-get, as ``tools/run_tests.sh`` does), stops every daemon it started, and
skips, saying why, only where that is impossible.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from sam2long.runtime.sharding import select_shard
from tests.conftest import MICRO_CFG, ROOT

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin"])
SAMPLE = ROOT / "samples" / "shapes"
# (name, first sample frame, frames): the two long videos end each shard of the 2-shard run,
# so that a scancel right after the first finished video lands mid-run.
VIDEOS = [("vid0", 0, 4), ("vid1", 4, 4), ("vid2", 0, 24), ("vid3", 8, 4), ("vid4", 12, 4), ("vid5", 0, 24)]
JOB_TIMEOUT = 240  # seconds for one job; the whole test takes about a minute on 2 idle cores
LABEL = re.compile(r"^\[shard (\d+)/(\d+) (\S+) gpu (\S+)\] (.*)$")


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def _ensure_slurm_installed():
    missing = [b for b in BINARIES if _which(b) is None]
    if not missing:
        return
    if os.geteuid() != 0 or _which("apt-get") is None:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing) and cannot be installed "
                    f"here (needs root and apt-get): apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(
        f"apt-get update -qq && apt-get install -y -qq --no-install-recommends {' '.join(PACKAGES)}",
        shell=True, env=env, capture_output=True, text=True, timeout=900)
    missing = [b for b in BINARIES if _which(b) is None]
    if result.returncode != 0 or missing:
        pytest.skip(f"could not install {' '.join(PACKAGES)} with apt-get (exit {result.returncode}, "
                    f"still missing: {missing}): {(result.stdout + result.stderr)[-600:]}")


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Cluster:
    """A two-node SLURM cluster on this host, in its own folder, with its own munged."""

    def __init__(self, root: Path):
        self.root = root
        self.name = f"vostest{os.getpid()}"
        self.conf = root / "slurm.conf"
        self.log_dir = root / "log"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": SEARCH_PATH}

    # ------------------------------------------------------------ set-up and tear-down

    def write_config(self):
        root = self.root
        for sub in ("munge", "state", "spool/node1", "spool/node2", "log", "jobs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "munge").chmod(0o755)  # munged wants its socket folder reachable by all
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld, node1, node2 = _free_ports(3)
        devices = "/dev/null,/dev/zero"  # character devices standing in for /dev/nvidia0,1
        self.conf.write_text(f"""\
ClusterName={self.name}
SlurmctldHost=localhost
SlurmctldPort={ctld}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
SlurmctldDebug=info
SlurmdDebug=info
NodeName=node1 NodeHostname=localhost NodeAddr=127.0.0.1 Port={node1} CPUs=4 Gres=gpu:2 State=UNKNOWN
NodeName=node2 NodeHostname=localhost NodeAddr=127.0.0.1 Port={node2} CPUs=4 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP
""")
        (root / "gres.conf").write_text(f"AutoDetect=off\nNodeName=node[1-2] Name=gpu File={devices}\n")

    def _spawn(self, name: str, *cmd: str):
        log = open(self.log_dir / f"{name}.console", "w")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def start(self):
        self.write_config()
        m = self.root / "munge"
        self._spawn("munged", _which("munged"), "-F", f"--key-file={m}/munge.key",
                    f"--socket={m}/socket", f"--pid-file={m}/munged.pid",
                    f"--seed-file={m}/munged.seed", f"--log-file={self.log_dir}/munged.log")
        self._wait_for(lambda: (m / "socket").exists(), 20, "munged to create its socket")
        self._spawn("slurmctld", _which("slurmctld"), "-D", "-i")
        time.sleep(1)
        for node in ("node1", "node2"):
            self._spawn(f"slurmd-{node}", _which("slurmd"), "-D", "-N", node)
        self._wait_for(self._nodes_idle, 60, "both nodes to be idle in sinfo")

    def _nodes_idle(self) -> bool:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}\n{self.logs()}")
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False).stdout.split()
        return out.count("idle") == 2

    def _wait_for(self, condition, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    def stop(self):
        """Cancel every job, stop every daemon this test started, and anything they left."""
        if any(name == "slurmctld" and p.poll() is None for name, p in self.procs):
            self.run("scancel", "--user=root", check=False)
            try:
                self._wait_for(lambda: not self.run("squeue", "-h", check=False).stdout.strip(),
                               30, "the queue to empty")
            except AssertionError:
                pass
        for name, proc in reversed(self.procs):  # slurmd first, munged last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        for pid in self._leftover_pids():  # job steps' slurmstepd and workers, by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _leftover_pids(self) -> list[int]:
        """Processes that carry this cluster's name or config in their environment."""
        return self._pids_with(f"SLURM_CLUSTER_NAME={self.name}", f"SLURM_CONF={self.conf}")

    def wait_processes_gone(self, job: str, timeout: float = 30):
        """Wait until no process of `job` is left. squeue forgets a cancelled job (and
        scontrol says CANCELLED) while slurmstepd may still be killing its workers, which
        hold their outputs' locks until they exit: a resubmit in that window is refused."""
        self._wait_for(lambda: not self._pids_with(f"SLURM_JOB_ID={job}"), timeout,
                       f"the processes of job {job} to exit")

    def _pids_with(self, *variables: str) -> list[int]:
        """Processes with any of `variables` ('NAME=value') in their environment."""
        marks = tuple(v.encode() for v in variables)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(mark in environ for mark in marks):
                found.append(int(entry.name))
        return found

    # ------------------------------------------------------------ using it

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}): "
                                 f"{result.stdout}{result.stderr}\n{self.logs()}")
        return result

    def sbatch(self, *args: str) -> str:
        out = self.run("sbatch", "--parsable", f"--chdir={ROOT}", *args).stdout.strip()
        return out.split(";")[0]

    def states(self, job: str) -> list[str]:
        """'JobState ExitCode' of the job (each task of an array); [] once it is forgotten."""
        out = self.run("scontrol", "-o", "show", "job", job, check=False).stdout
        return [f"{m.group(1)} {m.group(2)}" for m in
                re.finditer(r"JobState=(\S+).*?ExitCode=(\S+)", out)]

    def wait(self, job: str, timeout: float = JOB_TIMEOUT, logs=()) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", job, check=False).stdout.strip():
                return self.states(job)
            time.sleep(0.3)
        self.run("scancel", job, check=False)
        raise AssertionError(f"job {job} still running after {timeout}s\n{self.logs(*logs)}")

    def logs(self, *extra: Path) -> str:
        parts = []
        for path in [*sorted(self.log_dir.glob("*")), *extra]:
            try:
                text = Path(path).read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"----- {path} (last 3000 chars)\n{text[-3000:]}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("a real SLURM cluster needs root here: slurmd starts job steps as their owner")
    _ensure_slurm_installed()
    root = Path(tempfile.mkdtemp(prefix="vos-slurm-", dir="/tmp"))
    root.chmod(0o755)
    cluster = Cluster(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if os.environ.get("VOS_SLURM_TEST_KEEP"):  # to read the job logs afterwards
            print(f"kept the cluster's folder {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def dataset(cluster) -> Path:
    """Six small DAVIS-layout videos cut from the shipped sample clip."""
    root = cluster.root / "data"
    frames = sorted((SAMPLE / "JPEGImages" / "shapes").glob("*.jpg"))
    prompt = SAMPLE / "Annotations" / "shapes" / "00000.png"
    for name, first, count in VIDEOS:
        (root / "JPEGImages" / name).mkdir(parents=True)
        (root / "Annotations" / name).mkdir(parents=True)
        for t in range(count):
            shutil.copy(frames[first + t], root / "JPEGImages" / name / f"{t:05d}.jpg")
        shutil.copy(prompt, root / "Annotations" / name / "00000.png")
    Image.open(prompt).verify()
    return root


def _vos_args(dataset: Path, checkpoint: Path, out: Path) -> list[str]:
    # --backend torch: `auto` times the backends per process, and --export=NONE drops the
    # test's cache settings, so tasks could pick differently and the layouts' bytes differ.
    return ["--sam2_cfg", MICRO_CFG, "--sam2_checkpoint", str(checkpoint), "--device", "cpu", "--backend", "torch",
            "--base_video_dir", str(dataset / "JPEGImages"),
            "--input_mask_dir", str(dataset / "Annotations"), "--output_mask_dir", str(out)]


def _python_export(kind: str) -> str:
    """--export for sbatch: NONE relies on the launcher finding .venv/bin/python itself."""
    if kind == "NONE" and (ROOT / ".venv" / "bin" / "python").exists():
        return "--export=NONE"
    return f"--export={kind},PYTHON={sys.executable}"


def _workers(logs: list[Path]) -> dict[tuple[int, int], dict]:
    """Per labelled worker: its label, the shard it printed, the videos it opened, its summary."""
    workers: dict[tuple[int, int], dict] = {}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            m = LABEL.match(line)
            if not m:
                continue
            key = (int(m.group(1)), int(m.group(2)))
            w = workers.setdefault(key, {"where": set(), "printed": [], "videos": set(),
                                         "tracked": 0, "skipped": 0, "lines": []})
            w["where"].add((m.group(3), m.group(4)))
            text = m.group(5)
            w["lines"].append(text)
            if shard := re.match(r"shard (\d+) of (\d+) \(source: ", text):
                w["printed"].append((int(shard.group(1)), int(shard.group(2))))
            if video := re.match(r"(vid\d):", text):
                w["videos"].add(video.group(1))
            if done := re.match(r"done: (\d+) tracked, (\d+) already complete, 0 failed", text):
                w["tracked"] += int(done.group(1))
                w["skipped"] += int(done.group(2))
    return workers


def _check_exactly_once(workers: dict, total: int, resumed: set[str] = frozenset()):
    names = [v[0] for v in VIDEOS]
    assert sorted(workers) == [(i, total) for i in range(total)], sorted(workers)
    owner: dict[str, tuple[int, int]] = {}
    for key, w in workers.items():
        assert w["printed"] == [key], f"worker {key} printed {w['printed']}:\n" + "\n".join(w["lines"])
        assert len(w["where"]) == 1, f"one label per worker, got {w['where']}"
        expected = set(select_shard(names, *key))
        # the per-video progress line names every video the worker tracked; skipped ones print none
        assert w["videos"] == expected - resumed, (key, w["videos"], expected, resumed)
        assert w["tracked"] == len(expected - resumed) and w["skipped"] == len(expected & resumed)
        for video in w["videos"]:
            assert video not in owner, f"{video} run by {owner[video]} and {key}"
            owner[video] = key
    assert sorted(owner) == sorted(set(names) - resumed)


def _outputs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _completed(out: Path) -> set[str]:
    return {v for v, _, _ in VIDEOS if (out / v / ".complete").is_file()}


def test_launcher_on_real_slurm(cluster, dataset, micro_checkpoints):
    checkpoint = micro_checkpoints["plain"]
    jobs = cluster.root / "jobs"
    t0 = time.monotonic()

    # 1. --export=NONE, 2 nodes x 2 tasks, the node's 2 GPUs visible to both tasks of a node.
    ref = cluster.root / "out_ref"
    log = jobs / "ref.out"
    job = cluster.sbatch(_python_export("NONE"), "--nodes=2", "--ntasks-per-node=2", "--gres=gpu:2",
                         "--cpus-per-task=1", f"--output={log}", "tools/slurm_vos_inference.sh",
                         *_vos_args(dataset, checkpoint, ref))
    assert cluster.wait(job, logs=[log]) == ["COMPLETED 0:0"], cluster.logs(log)
    workers = _workers([log])
    _check_exactly_once(workers, 4)
    where = sorted(next(iter(w["where"])) for w in workers.values())
    assert where == [("node1", "0"), ("node1", "1"), ("node2", "0"), ("node2", "1")], where
    assert all("OMP_NUM_THREADS=1" in " ".join(w["lines"]) for w in workers.values())
    assert _completed(ref) == {v for v, _, _ in VIDEOS}
    reference = _outputs(ref)

    # 2. An array of 2 tasks, 1 task each with 2 GPUs (2 workers, 1 CPU each): one numbering.
    out = cluster.root / "out_array"
    job = cluster.sbatch(_python_export("ALL"), "--array=0-1", "--nodes=1", "--ntasks-per-node=1",
                         "--gres=gpu:2", "--cpus-per-task=2", f"--output={jobs}/array-%a.out",
                         "tools/slurm_vos_inference.sh", *_vos_args(dataset, checkpoint, out))
    logs = [jobs / "array-0.out", jobs / "array-1.out"]
    assert cluster.wait(job, logs=logs) == ["COMPLETED 0:0"] * 2, cluster.logs(*logs)
    workers = _workers(logs)
    _check_exactly_once(workers, 4)
    assert all("OMP_NUM_THREADS=1" in " ".join(w["lines"]) for w in workers.values())  # 2 CPUs / 2
    assert _outputs(out) == reference  # same bytes whatever the layout

    # 3. The user's own srun, two tasks on one node sharing its two GPUs (launcher in a step).
    out = cluster.root / "out_srun"
    log = jobs / "srun.out"
    command = " ".join(["srun", "bash", "tools/slurm_vos_inference.sh", *_vos_args(dataset, checkpoint, out)])
    job = cluster.sbatch(_python_export("ALL"), "--nodes=1", "--ntasks-per-node=2", "--gres=gpu:2",
                         "--cpus-per-task=1", f"--output={log}", f"--wrap={command}")
    assert cluster.wait(job, logs=[log]) == ["COMPLETED 0:0"], cluster.logs(log)
    workers = _workers([log])
    _check_exactly_once(workers, 2)
    where = sorted(next(iter(w["where"])) for w in workers.values())
    assert where[0][0] == where[1][0] and [gpu for _, gpu in where] == ["0", "1"], where
    assert _outputs(out) == reference

    # 4. --gpus-per-task=1 (2 workers), scancel once a video is finished, then resubmit.
    out = cluster.root / "out_resume"
    submit = [_python_export("NONE"), "--nodes=1", "--ntasks-per-node=2", "--gpus-per-task=1",
              "--cpus-per-task=1", "tools/slurm_vos_inference.sh", *_vos_args(dataset, checkpoint, out)]
    first = jobs / "first.out"
    job = cluster.sbatch(f"--output={first}", *submit)
    deadline = time.monotonic() + JOB_TIMEOUT
    while not _completed(out):
        assert time.monotonic() < deadline, cluster.logs(first)
        assert cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip(), \
            f"job ended before it could be cancelled\n{cluster.logs(first)}"
        time.sleep(0.1)
    cluster.run("scancel", job)
    states = cluster.wait(job, logs=[first])
    assert states and states[0].startswith("CANCELLED"), states
    cluster.wait_processes_gone(job)
    done_before = _completed(out)
    assert done_before and done_before != {v for v, _, _ in VIDEOS}, \
        f"the scancel did not land mid-run (finished: {done_before})"
    second = jobs / "second.out"
    job = cluster.sbatch(f"--output={second}", *submit)
    assert cluster.wait(job, logs=[second]) == ["COMPLETED 0:0"], cluster.logs(second)
    _check_exactly_once(_workers([second]), 2, resumed=done_before)
    assert _outputs(out) == reference
    print(f"real SLURM test: {time.monotonic() - t0:.0f}s for 5 jobs")

"""A single-node Slurm on 127.0.0.1: munged, slurmctld and slurmd, everything in one folder.

Used by scripts/slurm-local.sh and by the Slurm tests; it needs root and Debian's slurm-wlm and
munge packages (`install()` gets them with apt-get). Nothing outside the folder is touched:

- munged runs as user `munge` with its own key and socket in `<root>/munge/`;
- slurm.conf lives in `<root>/slurm.conf` (AuthInfo points at that socket) and the daemons are
  started with `-f` on it; state, spool, pid and log files are under `<root>/`;
- `<root>/bin/` holds one wrapper per client command (sbatch, srun, squeue, ...) that sets
  SLURM_CONF. Putting it first on PATH is what makes a nested `srun` work: the Snakemake
  jobstep executor strips every SLURM_* variable (SLURM_CONF included) before it runs `srun`.

The PIDs of the three daemons are read from their pid files right after they start, kept in
`<root>/pids.json`, and `stop()` ends exactly those processes (after checking that each PID
still runs the program it was recorded for), after cancelling the jobs still in the queue.

    python scripts/slurm_local.py start [--root DIR] [--fake-gpus N]   # prints what to export
    python scripts/slurm_local.py stop  [--root DIR]

(scripts/slurm-local.sh wraps these two.)
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "salloc", "squeue", "scancel", "sinfo", "scontrol", "sacct", "sacctmgr", "sshare")
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
DEFAULT_ROOT = Path(tempfile.gettempdir()) / "xbml-slurm-local"


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be installed or started on this machine (the reason says why)."""


def which(tool: str) -> str | None:
    return shutil.which(tool, path=SBIN_PATH)


def missing_tools() -> list[str]:
    return [t for t in (*DAEMONS, *CLIENTS, "munge") if which(t) is None]


def install(log=print) -> None:
    """apt-get install slurm-wlm and munge if any of their programs is missing.

    Raises SlurmUnavailable where that cannot work (no apt-get, not root); an apt-get that
    runs and fails raises CalledProcessError, which is a failure, not a reason to skip.
    """
    missing = missing_tools()
    if not missing:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and apt-get is not available to install "
                               f"{' '.join(PACKAGES)}")
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed; installing {' '.join(PACKAGES)} with apt-get "
                               "and running munged/slurmd need root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log(f"installing {' '.join(PACKAGES)} with apt-get (missing: {', '.join(missing)})")
    subprocess.run([apt, "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([apt, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    still = missing_tools()
    if still:
        raise RuntimeError(f"apt-get installed {' '.join(PACKAGES)} but {', '.join(still)} are still missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware() -> dict:
    """CPUs, sockets, cores, threads and memory as `slurmd -C` sees them."""
    out = subprocess.run([which("slurmd"), "-C"], check=True, capture_output=True, text=True).stdout
    fields = dict(item.split("=", 1) for item in out.split("\n", 1)[0].split() if "=" in item)
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    hw = {k: int(fields[k]) for k in keep if k in fields}
    hw["RealMemory"] = int(int(fields["RealMemory"]) * 0.95)  # a little headroom, or the node is drained
    return hw


def _null_device(path: Path) -> None:
    """A character device like /dev/null (1, 3): slurmd wants GPU files to be devices."""
    if path.exists():
        return
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:  # no CAP_MKNOD (some containers): slurmd logs an error and goes on
        path.touch()


def _alive(pid: int, program: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and Path(cmdline[0].decode(errors="replace")).name == program


class LocalSlurm:
    def __init__(self, root: str | Path | None = None, partition: str = "debug", cluster: str = "xbmllocal",
                 fake_gpus: int = 0):
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="xbml-slurm-"))
        self.partition, self.cluster = partition, cluster
        # GPUs that Slurm allocates and accounts for but that do not exist (no device file): jobs
        # asking for --gpus get scheduled as on a GPU node and then compute on the CPU
        self.fake_gpus = fake_gpus
        self.conf = self.root / "slurm.conf"
        self.bin = self.root / "bin"
        self.munge_dir = self.root / "munge"
        self.log_dir = self.root / "log"
        self.pid_file = self.root / "pids.json"
        self.pids: dict[str, int] = json.loads(self.pid_file.read_text()) if self.pid_file.exists() else {}
        self.node = socket.gethostname().split(".")[0]

    # -- environment for clients ---------------------------------------------------------------
    def env(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        return env

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin / cmd[0]), *cmd[1:]], env=self.env(), capture_output=True, text=True,
                              check=check, timeout=60)

    @property
    def slurmctld_log(self) -> Path:
        return self.log_dir / "slurmctld.log"

    # -- start ---------------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "LocalSlurm":
        if os.geteuid() != 0:
            raise SlurmUnavailable("a local Slurm needs root (munged runs as user munge, slurmd as root)")
        missing = missing_tools()
        if missing:
            raise SlurmUnavailable(f"not installed: {', '.join(missing)} (see install())")
        if self.pids and any(_alive(pid, name) for name, pid in self.pids.items()):
            raise RuntimeError(f"a local Slurm already runs from {self.root} (pids {self.pids}); stop it first")
        self.pids = {}
        # munged checks that every folder up to its socket is reachable by its user
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for d in (self.log_dir, self.root / "state", self.root / "spool", self.bin):
            d.mkdir(exist_ok=True)
        try:
            self._start_munge()
            self._write_config()
            self._write_wrappers()
            self._start_daemon("slurmctld", self.root / "slurmctld.pid")
            self._start_daemon("slurmd", self.root / "slurmd.pid")
            self._wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_munge(self) -> None:
        munge = pwd.getpwnam("munge")
        self.munge_dir.mkdir(exist_ok=True)
        os.chown(self.munge_dir, munge.pw_uid, munge.pw_gid)
        self.munge_dir.chmod(0o755)
        key = self.munge_dir / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o600)
        pid_file = self.munge_dir / "munged.pid"
        subprocess.run(
            [which("munged"), f"--socket={self.munge_dir / 'munge.socket'}", f"--key-file={key}",
             f"--pid-file={pid_file}", f"--log-file={self.munge_dir / 'munged.log'}",
             f"--seed-file={self.munge_dir / 'munged.seed'}"],
            check=True, user=munge.pw_uid, group=munge.pw_gid, extra_groups=[], capture_output=True, text=True,
        )
        self._record("munged", pid_file)

    def _write_config(self) -> None:
        hw = _node_hardware()
        node = " ".join(f"{k}={v}" for k, v in hw.items())
        gres_types, node_gres = "", ""
        if self.fake_gpus:
            gres_types, node_gres = "GresTypes=gpu\n", f" Gres=gpu:{self.fake_gpus}"
            for i in range(self.fake_gpus):
                _null_device(self.root / f"fakegpu{i}")
            (self.root / "gres.conf").write_text(
                f"NodeName={self.node} Name=gpu File={self.root}/fakegpu[0-{self.fake_gpus - 1}]\n")
        r = self.root
        self.conf.write_text(
            f"""# single-node Slurm on loopback, written by {Path(__file__).name}
ClusterName={self.cluster}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_dir / 'munge.socket'}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={self.log_dir / 'slurmctld.log'}
SlurmdLogFile={self.log_dir / 'slurmd.log'}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MpiDefault=none
MailProg=/bin/true
# finished jobs stay visible to squeue for 5 minutes: the status command of the profile
# (squeue, there is no slurmdbd for sacct) needs MinJobAge >= 3 x init-seconds-before-status-checks
MinJobAge=300
KillWait=5
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
{gres_types}NodeName={self.node} NodeAddr=127.0.0.1{node_gres} {node} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _write_wrappers(self) -> None:
        for tool in CLIENTS:
            path = which(tool)
            wrapper = self.bin / tool
            wrapper.write_text(f"#!/bin/sh\nSLURM_CONF='{self.conf}' exec '{path}' \"$@\"\n")
            wrapper.chmod(0o755)

    def _start_daemon(self, name: str, pid_file: Path) -> None:
        # both daemonise (the parent returns once the child runs) and write their pid file
        subprocess.run([which(name), "-f", str(self.conf)], check=True, env=self.env(), capture_output=True,
                       text=True)
        self._record(name, pid_file)

    def _record(self, name: str, pid_file: Path, timeout: float = 15) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid, name):
                self.pids[name] = pid
                self.pid_file.write_text(json.dumps(self.pids))
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not start (no live pid in {pid_file}); see {self.log_dir} and "
                           f"{self.munge_dir / 'munged.log'}")

    def _wait_idle(self, timeout: float) -> None:
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            out = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False)
            state = out.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"node {self.node} not idle after {timeout}s (state {state!r}); see {self.log_dir}")

    # -- stop ----------------------------------------------------------------------------------
    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job of this cluster and wait until none runs (their processes are slurmd's)."""
        if not _alive(self.pids.get("slurmctld", 0), "slurmctld"):
            return
        ids = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
        if not ids:
            return
        self.run("scancel", *ids, check=False)
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = self.run("squeue", "-h", "-o", "%T", check=False).stdout.split()
            if not any(s in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED") for s in states):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        """Cancel the jobs, then end slurmd, slurmctld and munged: only the PIDs this object started."""
        try:
            self.cancel_all()
        finally:
            for name in ("slurmd", "slurmctld", "munged"):
                pid = self.pids.get(name)
                if pid:
                    _terminate(pid, name)
                    self.pids.pop(name)
            if self.root.exists():
                self.pid_file.write_text(json.dumps(self.pids))


def _terminate(pid: int, name: str, timeout: float = 15) -> None:
    if not _alive(pid, name):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _alive(pid, name):
            return
        time.sleep(0.1)
    if _alive(pid, name):
        os.kill(pid, signal.SIGKILL)


GPU_RESOURCES = ("gpu", "gpu_model", "gres", "cpus_per_gpu", "tasks_per_gpu")


def overlay_profile(profile_file: Path, dest: Path, gpus: bool, mem_mb: int = 2000, threads: int = 1,
                    init_seconds: int | None = None) -> Path:
    """Write `dest/config.yaml`: a profile that fits the jobs of `profile_file` on a small node.

    Layered on top (`snakemake --profile slurm --profile DEST`), it replaces the profile's
    `set-resources` and `set-threads` with copies where every job asks for `mem_mb`, `threads`
    threads and, for GPU jobs, one CPU per GPU; with `gpus=False` it drops the GPU request
    (for a node without GPUs, fake or real). Everything else of the profile stays in force.
    """
    import yaml

    profile = yaml.safe_load(Path(profile_file).read_text())
    resources = {}
    for rule, res in (profile.get("set-resources") or {}).items():
        res = dict(res) if gpus else {k: v for k, v in res.items() if k not in GPU_RESOURCES}
        res.pop("gpu_model", None)  # the local GPUs have no type
        res["mem_mb"] = mem_mb
        if "cpus_per_gpu" in res:
            res["cpus_per_gpu"] = threads
        resources[rule] = res
    overlay = {"set-resources": resources, "set-threads": {rule: threads for rule in profile.get("set-threads") or {}}}
    if init_seconds is not None:
        overlay["slurm-init-seconds-before-status-checks"] = init_seconds
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(
        f"# written by {Path(__file__).name} from {profile_file}: its jobs sized for a local node\n"
        + yaml.safe_dump(overlay, sort_keys=False)
    )
    return dest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["install", "start", "stop", "status"])
    p.add_argument("--root", default=str(DEFAULT_ROOT), help=f"folder for config, state and logs [{DEFAULT_ROOT}]")
    p.add_argument("--fake-gpus", type=int, default=0,
                   help="GPUs the node advertises without having them (jobs asking for GPUs run on the CPU)")
    p.add_argument("--profile", default="slurm/config.yaml",
                   help="profile to write a sized-down overlay for, into <root>/profile [slurm/config.yaml]")
    args = p.parse_args(argv)
    slurm = LocalSlurm(args.root, fake_gpus=args.fake_gpus)
    try:
        if args.action == "install":
            install(log=lambda m: print(m, file=sys.stderr))
        elif args.action == "start":
            install(log=lambda m: print(m, file=sys.stderr))
            slurm.start()
            print(f"export SLURM_CONF={slurm.conf}")
            print(f"export PATH={slurm.bin}:$PATH")
            print(f"started {slurm.pids}; logs in {slurm.log_dir}", file=sys.stderr)
            if Path(args.profile).is_file():
                overlay = overlay_profile(Path(args.profile), slurm.root / "profile", gpus=args.fake_gpus > 0)
                print(f"run: snakemake --profile slurm --profile {overlay}   (jobs sized for this machine)",
                      file=sys.stderr)
        elif args.action == "stop":
            slurm.stop()
            print(f"stopped the local Slurm of {slurm.root}", file=sys.stderr)
        else:
            alive = {n: p for n, p in slurm.pids.items() if _alive(p, n)}
            print(json.dumps({"root": str(slurm.root), "running": alive}))
            return 0 if alive else 1
    except SlurmUnavailable as exc:
        print(f"local Slurm unavailable: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

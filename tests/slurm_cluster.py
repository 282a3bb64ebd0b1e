"""A real one-node SLURM cluster on 127.0.0.1 for the cluster tests, private to one test session.

Debian's ``slurm-wlm`` and ``munge`` daemons, started by hand (no systemd)
with everything of their own in one temporary folder: a munge key and
socket, a ``slurm.conf`` that clients find through ``SLURM_CONF``, free TCP
ports, state and spool folders. Nothing machine-wide is read or written
(not ``/etc/slurm``, ``/etc/munge``, ``/run/munge`` nor ports 6817/6818), so
a site's cluster on the same machine is neither used nor disturbed, and
two test sessions each run their own. Only the daemons started here are
stopped, by the pids they wrote.

The configuration is cgroup-free (``proctrack/linuxproc``, ``task/none``),
without accounting; ``select/cons_tres`` with ``CR_Core`` runs one job per
core, and ``EnforcePartLimits=ALL`` makes sbatch refuse a job the node
cannot hold instead of queueing it forever.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")
PARTITION = "mdxbg"


def unavailable() -> str | None:
    """Why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        return "a one-node SLURM needs root (slurmd runs jobs as their user)"
    missing = [
        name
        for name in (*DAEMONS, *CLIENTS, "munge")
        if not shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    ]
    if missing:
        names = ", ".join(missing)
        return f"SLURM/munge not installed ({names} missing: apt-get install slurm-wlm munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for PID 1 to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _sbin(name: str) -> str:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or name


class OneNodeSlurm:
    """A one-node SLURM in its own folder; :meth:`start`, then :meth:`stop`."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mdxbg-slurm-"))
        self.conf = self.root / "slurm.conf"
        self.node = ""
        self.memory_mb = 0
        self.cpus = 0
        self.pids: dict[str, int] = {}

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients (sbatch, squeue...) and commands that use them."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command against this cluster."""
        return subprocess.run(
            cmd,
            env=dict(os.environ, **self.env),
            capture_output=True,
            text=True,
            check=check,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 30.0) -> None:
        """Start munged, slurmctld and slurmd; return once the node is idle (else RuntimeError)."""
        root = self.root
        root.chmod(0o755)  # munged wants its socket folder reachable by all
        for sub, mode in (("munge", 0o700), ("run", 0o755), ("state", 0o700), ("spool", 0o755)):
            (root / sub).mkdir(mode=mode)
        key = root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        sock = root / "run" / "munge.socket"
        self._daemon(
            "munged",
            [
                _sbin("munged"),
                f"--socket={sock}",
                f"--key-file={key}",
                f"--pid-file={root / 'run' / 'munged.pid'}",
                f"--log-file={root / 'munge' / 'munged.log'}",
                f"--seed-file={root / 'munge' / 'munged.seed'}",
            ],
        )
        self._write_conf(sock)
        self._daemon("slurmctld", [_sbin("slurmctld"), "-f", str(self.conf), "-i"])
        self._daemon("slurmd", [_sbin("slurmd"), "-f", str(self.conf)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.run("sinfo", "--noheader", "--format=%T", check=False).stdout.split()
            if out == ["idle"]:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the test SLURM node is not idle after {timeout} s: {self.log_tail()}")

    def _write_conf(self, sock: Path) -> None:
        node_line = subprocess.run(
            [_sbin("slurmd"), "-C"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[0]
        fields = dict(f.split("=", 1) for f in node_line.split())
        self.node = fields["NodeName"]
        self.cpus = int(fields["CPUs"])
        self.memory_mb = int(fields["RealMemory"])
        root = self.root
        self.conf.write_text(
            f"""# Written by tests/slurm_cluster.py: a private one-node test cluster.
ClusterName=mdxbgtest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "run" / "slurmctld.pid"}
SlurmdPidFile={root / "run" / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
EnforcePartLimits=ALL
ReturnToService=2
KillWait=2
MpiDefault=none
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )

    def _daemon(self, name: str, cmd: list[str]) -> None:
        """Start a daemon (it forks) and note the pid it writes."""
        pidfile = self.root / "run" / f"{name}.pid"
        proc = subprocess.run(
            cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{name} did not start: {(proc.stderr or proc.stdout).strip()}")
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                self.pids[name] = int(pidfile.read_text().split()[0])
                return
            time.sleep(0.05)
        raise RuntimeError(f"{name} wrote no pid file")

    def _ours(self, pid: int) -> bool:
        """True if ``pid`` is a daemon started with this cluster's folder (not a reused pid)."""
        try:
            return str(self.root).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def log_tail(self) -> str:
        text = []
        for log in ("slurmctld.log", "slurmd.log"):
            path = self.root / log
            if path.exists():
                text += path.read_text().splitlines()[-3:]
        return " | ".join(text)

    def jobs(self) -> list[str]:
        """Ids of the jobs that are pending or running now."""
        return self.run("squeue", "--noheader", "--format=%i").stdout.split()

    def stop(self) -> None:
        """Stop the daemons started here (by pid, last started first) and remove the folder."""
        if "slurmctld" in self.pids:
            self.run("scancel", f"--partition={PARTITION}", check=False)
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None or not _alive(pid) or not self._ours(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

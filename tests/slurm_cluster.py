"""A throwaway single-node SLURM on loopback, for the workflow's SLURM test.

Starts munge, a MariaDB on a unix socket only (``--skip-networking``),
slurmdbd (accounting, which the snakemake SLURM executor queries with
``sacct``), slurmctld and slurmd with two fake GPUs (gres files /dev/null and
/dev/zero), all as root from the Debian packages ``slurm-wlm slurm-client
munge slurmdbd mariadb-server``; stops everything it started by pid at the
end. Besides the default partition ``debug`` and the ``root`` account there is
a partition :data:`PARTITION` that is not the default and an account
:data:`ACCOUNT` that is not root's default, and associations are enforced, so
a job lands there only when sbatch was asked for them. The node offers at least
:data:`MIN_CPUS` CPUs whatever the machine has, so jobs of several CPUs run side
by side on a small machine. The configuration must live in /etc/slurm (job steps drop SLURM_CONF);
files there that existed before are restored on stop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["ACCOUNT", "PARTITION", "SlurmCluster", "missing_prerequisites"]

CLUSTER = "enhance"
ACCOUNT = "solar"
"""An account root may use that is not its default one."""
PARTITION = "archive"
"""A partition that is not the default one."""
MIN_CPUS = 4
BINARIES = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db")
BINARIES_USER = ("sbatch", "sacct", "sacctmgr", "sinfo", "scancel", "squeue")
ETC = Path("/etc/slurm")
MYSQL_RUN = Path("/run/mysqld")


def missing_prerequisites() -> str | None:
    """Why a cluster cannot start here, or None."""
    if os.geteuid() != 0:
        return "starting a SLURM needs root"
    missing = [b for b in (*BINARIES, *BINARIES_USER) if shutil.which(b) is None]
    if missing:
        return (
            f"missing {', '.join(missing)} (apt-get install slurm-wlm slurm-client munge "
            "slurmdbd mariadb-server)"
        )
    return None


def _wait(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise RuntimeError(f"SLURM test cluster: {what} did not come up within {timeout:.0f} s")


def _ok(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    def __init__(self) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="enhance-slurm-"))
        self.pidfiles: list[Path] = []
        self.backups: dict[Path, bytes | None] = {}
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> SlurmCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_etc(self, name: str, text: str, mode: int = 0o644) -> None:
        path = ETC / name
        if path not in self.backups:
            self.backups[path] = path.read_bytes() if path.exists() else None
        path.write_text(text)
        path.chmod(mode)

    def _daemon(self, cmd: list[str], pidfile: Path) -> None:
        self.pidfiles.append(pidfile)
        with open(self.state / f"{Path(cmd[0]).name}.out", "ab") as log:
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            )

    def start(self) -> None:
        """Start munge, MariaDB, slurmdbd, slurmctld and slurmd; wait until the node is idle."""
        s = self.state
        ETC.mkdir(parents=True, exist_ok=True)
        self._munge()
        # MariaDB on the default socket path (slurmdbd connects to "localhost")
        MYSQL_RUN.mkdir(parents=True, exist_ok=True)
        datadir = s / "mysql"
        subprocess.run(
            ["mariadb-install-db", "--user=root", f"--datadir={datadir}", "--skip-test-db"],
            check=True,
            capture_output=True,
        )
        self._daemon(
            [
                shutil.which("mariadbd") or "mariadbd",
                "--user=root",
                f"--datadir={datadir}",
                "--skip-networking",
                f"--socket={MYSQL_RUN / 'mysqld.sock'}",
                f"--pid-file={s / 'mariadb.pid'}",
            ],
            s / "mariadb.pid",
        )
        _wait(lambda: (MYSQL_RUN / "mysqld.sock").exists(), "MariaDB")
        cpus = max(os.cpu_count() or 1, MIN_CPUS)
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        memory = int(total_kib / 1024 * 0.8)
        self._write_etc(
            "slurmdbd.conf",
            f"""AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile={s}/slurmdbd.pid
LogFile={s}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
""",
            0o600,
        )
        self._write_etc(
            "slurm.conf",
            f"""ClusterName={CLUSTER}
SlurmctldHost=localhost(127.0.0.1)
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={s}/ctld
SlurmdSpoolDir={s}/d
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd.pid
SlurmctldLogFile={s}/slurmctld.log
SlurmdLogFile={s}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageTRES=gres/gpu
JobCompType=jobcomp/none
AccountingStoreFlags=job_comment
MinJobAge=300
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITION} Nodes=localhost Default=NO MaxTime=INFINITE State=UP
""",
        )
        self._write_etc(
            "gres.conf",
            "NodeName=localhost Name=gpu File=/dev/null\n"
            "NodeName=localhost Name=gpu File=/dev/zero\n",
        )
        for sub in ("ctld", "d"):
            (s / sub).mkdir(exist_ok=True)
        self._daemon(["slurmdbd"], s / "slurmdbd.pid")
        _wait(lambda: _ok("sacctmgr", "-n", "list", "cluster"), "slurmdbd")
        subprocess.run(["sacctmgr", "-i", "add", "cluster", CLUSTER], capture_output=True)
        subprocess.run(
            ["sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}"],
            capture_output=True,
        )
        subprocess.run(
            ["sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}"],
            capture_output=True,
        )
        self._daemon(["slurmctld"], s / "slurmctld.pid")
        self._daemon(["slurmd"], s / "slurmd.pid")

        def idle() -> bool:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
            return out.returncode == 0 and out.stdout.strip() == "idle"

        _wait(idle, "the node (sinfo idle)", timeout=90)

    def _munge(self) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
        if _ok("munge", "-n"):
            return  # a munged is already running: use it, leave it running
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        self.pidfiles.append(run / "munged.pid")
        _wait(lambda: _ok("munge", "-n"), "munged")

    def stop(self) -> None:
        """Cancel jobs, stop every daemon started here (by pid), restore /etc/slurm."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", "--full", "--user=root"], capture_output=True, timeout=20)
        for pidfile in reversed(self.pidfiles):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
                    os.kill(pid, 0)
                    time.sleep(0.2)
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:  # daemons fork away; reap what is left of the launchers
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for path, content in self.backups.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
        shutil.rmtree(self.state, ignore_errors=True)


if __name__ == "__main__":  # manual check: python tests/slurm_cluster.py
    with SlurmCluster() as cluster:
        print(subprocess.run(["sinfo"], capture_output=True, text=True).stdout)

#!/bin/sh
# Scheduled archive update: run the workflow at most once at a time per working
# directory, and recover by itself from a run that was killed.
#
#   profiles/update.sh --profile slurm --configfile update.yaml    (from cron)
#   exec profiles/update.sh --profile slurm --configfile update.yaml   (scrontab)
#
# Arguments are snakemake's. The script takes an exclusive lock
# (flock(1) on <workdir>/.snakemake/enhance-update.lock; the kernel drops it
# when the holder dies, even by SIGKILL), then:
#   - another update holds the lock: prints one line and exits 75 (EX_TEMPFAIL),
#     touching nothing;
#   - a Snakemake lock is in <workdir>/.snakemake/locks: it asks
#     `python -m enhance_hmi.workflow.run_lock <workdir>` who owns it, from the
#     process table (/proc): a live snakemake run of this host whose working
#     directory (or -d/--directory) is <workdir>, that is not a dry run or an
#     --unlock, and that started before the newest lock file was written.
#       - a live run owns it (say a snakemake started by hand, without this
#         script): prints one line naming it (pid, start time, command line) and
#         exits 75, touching nothing;
#       - none does (a run that was killed left it): says so in one line and runs
#         `snakemake --unlock`;
#       - it cannot tell (no /proc; a run of the lock's user whose details this
#         user may not read) or the check itself fails: prints one line and
#         exits 75 (cannot tell) or 1 (the check failed), touching nothing;
#   - then it execs snakemake (same process: signals such as scrontab's
#     --signal=B:INT reach it), which keeps the lock until it exits; its exit
#     status is the script's: 0 every job finished, 3 every job finished but
#     frames are quarantined (the run's last line names them with their causes),
#     1 something failed (<output>/status.json says what).
#
# Environment: SNAKEMAKE, the snakemake command (default `snakemake`); PYTHON,
# the python of snakemake's environment, which imports enhance for the check
# (default: the `python` beside SNAKEMAKE's first word, as in
# SNAKEMAKE=/opt/enhance/venv/bin/snakemake or SNAKEMAKE="/opt/enhance/venv/bin/python
# -m snakemake", else python3).
#
# A snakemake on another host (or in another container) sharing the directory
# is not in this host's process table: its lock looks stale and is removed. Run
# every update of a shared directory from one host.
set -eu

workdir=.
previous=
for arg in "$@"; do
    case "$previous" in -d | --directory) workdir=$arg ;; esac
    case "$arg" in --directory=*) workdir=${arg#--directory=} ;; esac
    previous=$arg
done
snakemake=${SNAKEMAKE:-snakemake}

mkdir -p "$workdir/.snakemake"
lock="$workdir/.snakemake/enhance-update.lock"
exec 9>>"$lock"
if ! flock -n 9; then
    echo "enhance update: another update of $workdir is running (it holds $lock); skipped" >&2
    exit 75
fi
if [ -n "$(ls -A "$workdir/.snakemake/locks" 2>/dev/null)" ]; then
    python=${PYTHON:-}
    if [ -z "$python" ]; then
        first=${snakemake%% *}
        bindir=$(dirname "$(command -v "$first" || echo "$first")")
        python=python3
        if [ -x "$bindir/python" ]; then python=$bindir/python; fi
    fi
    status=0
    owner=$("$python" -m enhance_hmi.workflow.run_lock "$workdir") || status=$?
    case $status in
    0) ;; # the run that held it has ended meanwhile
    5)
        echo "enhance update: removing the Snakemake lock left by a run that was killed ($owner)" >&2
        $snakemake --unlock "$@" >&2
        ;;
    3 | 4)
        echo "enhance update: $owner; skipped" >&2
        exit 75
        ;;
    *)
        echo "enhance update: could not check who holds the Snakemake lock in $workdir ($python -m enhance_hmi.workflow.run_lock exited $status; set PYTHON to the python of snakemake's environment); nothing done" >&2
        exit 1
        ;;
    esac
fi
exec $snakemake "$@"

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
#   - a Snakemake lock is left in <workdir>/.snakemake/locks: no update holds our
#     lock, so it is the leftover of a killed run; `snakemake --unlock` removes it;
#   - then it execs snakemake (same process: signals such as scrontab's
#     --signal=B:INT reach it), which keeps the lock until it exits; its exit
#     status is the script's: 0 every job finished, 1 something failed
#     (<output>/status.json says what).
# Safe as long as every run in that working directory goes through this script
# (or takes the same lock: flock .snakemake/enhance-update.lock snakemake ...).
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
    echo "enhance update: removing the Snakemake lock left by a run that was killed" >&2
    $snakemake --unlock "$@" >&2
fi
exec $snakemake "$@"

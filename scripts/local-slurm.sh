#!/usr/bin/env bash
# A real single-node Slurm on this machine, all of its state in one folder (tests/test_slurm.py uses it; so can you).
#
#   scripts/local-slurm.sh start DIR   install the Debian packages if missing, write DIR/etc/slurm.conf, start munged,
#                                      slurmctld and slurmd (PIDs in DIR/pids/), wait for the node to be idle, and
#                                      write DIR/bin/{sbatch,squeue,...}: put DIR/bin first on PATH to use this Slurm
#   scripts/local-slurm.sh stop DIR    cancel this Slurm's jobs, then stop exactly the daemons started for DIR
#   scripts/local-slurm.sh status DIR  sinfo and squeue of this Slurm
#
# Then, e.g.:  PATH=DIR/bin:$PATH snakemake --profile profiles/slurm results/test/labels/gold.jsonl
#
# Needs root (slurmd runs jobs as their users; apt-get installs the packages). No systemd: the daemons run in the
# foreground (-D / -F) in the background, their output in DIR/log/. The node has CPUs = nproc, RealMemory = 85% of
# RAM and one fake GPU (gres gpu:1, File=/dev/null) so GPU requests schedule; jobs then see CUDA_VISIBLE_DEVICES=0.
# Facts behind the configuration: /work/shared/notes/slurm.md (measured on these machines, Slurm 22.05).
# Environment: RMOOD_SLURM_PORT (slurmctld's port, slurmd uses the next one; default: two free ports).
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
CLIENTS=(sbatch squeue scancel sinfo srun salloc sacct sacctmgr sshare scontrol)
DAEMONS=(munged slurmctld slurmd)

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
log() { echo "local-slurm: $*" >&2; }
die() { log "$*"; exit 1; }

system_path() { PATH=/usr/sbin:/usr/bin:/sbin:/bin command -v "$1"; }  # a program of the packages, not a wrapper

install_packages() {
    local program
    for program in slurmctld slurmd munged sbatch sacct; do
        system_path "$program" >/dev/null || {
            [[ $EUID == 0 ]] || die "installing the Slurm packages needs root: apt-get install ${PACKAGES[*]}"
            log "installing ${PACKAGES[*]}"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >&2
            return
        }
    done
}

free_ports() {  # two consecutive free TCP ports on localhost
    python3 - <<'PY'
import socket
for port in range(20000, 40000, 2):
    try:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port))
            b.bind(("127.0.0.1", port + 1))
    except OSError:
        continue
    print(port)
    break
PY
}

write_config() {
    local dir=$1 port=$2 cpus mem_kb real_memory
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    real_memory=$((mem_kb * 85 / 100 / 1024))
    cat >"$dir/etc/slurm.conf" <<CONF
# Written by scripts/local-slurm.sh: a one-node Slurm for tests, all state under $dir
ClusterName=rmood-local
SlurmctldHost=localhost
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
CommunicationParameters=NoInAddrAny
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
# Finished jobs stay visible to squeue for 300 s: snakemake's squeue status checks rely on it (profiles/slurm).
MinJobAge=300
MailProg=/bin/true
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_memory Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    # A GPU without File= is dropped and the node goes INVAL; /dev/null stands in for the device.
    cat >"$dir/etc/gres.conf" <<CONF
AutoDetect=off
NodeName=localhost Name=gpu File=/dev/null
CONF
}

write_clients() {  # wrappers that point the clients at this Slurm (the jobstep plugin strips SLURM_CONF before srun)
    local dir=$1 program path
    for program in "${CLIENTS[@]}"; do
        path=$(system_path "$program") || die "$program not found"
        printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$dir/etc/slurm.conf" "$path" >"$dir/bin/$program"
        chmod 755 "$dir/bin/$program"
    done
}

alive() {  # alive NAME DIR: the daemon started for DIR under NAME is still running
    local pid_file=$2/pids/$1.pid pid command
    [[ -s $pid_file ]] || return 1
    pid=$(<"$pid_file")
    # the PID is ours only while its command line still names this folder (no killing a reused PID)
    command=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $command == *"$2/"* ]]
}

launch() {  # launch NAME DIR COMMAND...: run a daemon in the foreground, in the background, in its own session
    local name=$1 dir=$2
    shift 2
    setsid "$@" </dev/null >>"$dir/log/$name.out" 2>&1 &
    echo $! >"$dir/pids/$name.pid"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2 i
    shift 2
    for ((i = 0; i < seconds * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "timed out after ${seconds}s waiting for $what"
    return 1
}

node_idle() { [[ $("$1/bin/sinfo" -h -n localhost -o %t 2>/dev/null) == idle ]]; }

no_jobs() { [[ -z $("$1/bin/squeue" -h 2>/dev/null) ]]; }

exited() { ! kill -0 "$1" 2>/dev/null; }

start() {
    local dir=$1 port name
    [[ $EUID == 0 ]] || die "start needs root (slurmd runs jobs as their users)"
    install_packages
    for name in "${DAEMONS[@]}"; do
        alive "$name" "$dir" && die "$name is already running for $dir; stop it first: $0 stop $dir"
    done
    (( ${#dir} <= 80 )) || die "DIR is too long for munge's socket path (at most 80 characters): $dir"
    mkdir -p "$dir"/{etc,bin,pids,run,log,state,spool,munge}
    chmod 755 "$dir/munge"  # munged refuses a socket folder that others may write to
    port=${RMOOD_SLURM_PORT:-$(free_ports)}
    [[ -n $port ]] || die "no free TCP port pair found"
    write_config "$dir" "$port"
    write_clients "$dir"
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"

    # -f: the folder may sit below a world-writable one (/tmp), which munged otherwise refuses
    launch munged "$dir" "$(system_path munged)" -F -f --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
    wait_for 10 munged test -S "$dir/munge/munge.socket" || { stop "$dir"; die "munged did not start: $dir/log/"; }
    export SLURM_CONF=$dir/etc/slurm.conf
    launch slurmctld "$dir" "$(system_path slurmctld)" -D -i -f "$SLURM_CONF"
    launch slurmd "$dir" "$(system_path slurmd)" -D -N localhost -f "$SLURM_CONF"
    if ! wait_for 60 "the node to be idle" node_idle "$dir"; then
        tail -n 20 "$dir"/log/*.log "$dir"/log/*.out >&2 || true
        stop "$dir"
        die "Slurm did not come up; logs in $dir/log/"
    fi
    log "Slurm is up (slurmctld port $port); use it with: export PATH=$dir/bin:\$PATH"
}

terminate() {  # terminate DIR NAME...: SIGTERM the daemons started for DIR under these names, wait (SIGKILL after 15 s)
    local dir=$1 name pid pids=()
    shift
    for name in "$@"; do
        if alive "$name" "$dir"; then
            pid=$(<"$dir/pids/$name.pid")
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
    done
    for pid in "${pids[@]}"; do
        wait_for 15 "process $pid to exit" exited "$pid" || kill -KILL "$pid" 2>/dev/null || true
    done
    for name in "$@"; do
        rm -f "$dir/pids/$name.pid"
    done
}

stop() {
    local dir=$1
    if alive slurmctld "$dir"; then
        "$dir/bin/scancel" --full --user="$(id -un)" >/dev/null 2>&1 || true
        wait_for 30 "this Slurm's jobs to end" no_jobs "$dir" || true
    fi
    terminate "$dir" slurmd slurmctld
    terminate "$dir" munged  # last: the Slurm daemons authenticate through it while they shut down
}

status() {
    local dir=$1
    "$dir/bin/sinfo"
    "$dir/bin/squeue"
}

[[ $# == 2 ]] || usage
dir=$(mkdir -p "$2" && cd "$2" && pwd -P)
case $1 in
    start) start "$dir" ;;
    stop) stop "$dir" ;;
    status) status "$dir" ;;
    *) usage ;;
esac

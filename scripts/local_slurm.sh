#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the launcher's test (and for trying a sweep):
#   sudo scripts/local_slurm.sh up      # install (Debian packages), configure, start, wait idle
#   sudo scripts/local_slurm.sh status  # sinfo
#   sudo scripts/local_slurm.sh down    # stop the daemons, forget the jobs
# The node is this machine at 127.0.0.1 with its CPUs and memory; no accounting daemon (so no
# sacct); a requeued job may start again after 10 s (cred_expire), not 120 s. Writes
# /etc/slurm/slurm.conf, and refuses to replace one it did not write.
set -euo pipefail

MARK="# written by pogo scripts/local_slurm.sh"
CONF=/etc/slurm/slurm.conf
STATE=/var/lib/slurm-pogo
LOGS=/var/log/slurm-pogo

die() { echo "local_slurm: $*" >&2; exit 1; }

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return
  command -v apt-get >/dev/null || die "needs Debian's slurmctld, slurmd, slurm-client and munge (no apt-get here)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurmctld slurmd slurm-client munge >/dev/null \
    || die "apt-get install slurmctld slurmd slurm-client munge failed"
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script: not replacing a real cluster's config"
  fi
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))  # MiB, 1 GiB for the OS
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOGS" /run/slurm-pogo
  cat > "$CONF" <<EOF
$MARK
ClusterName=pogo-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobRequeue=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=30
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurm-pogo/slurmctld.pid
SlurmdPidFile=/run/slurm-pogo/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  pgrep -x munged >/dev/null && return
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -f /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
}

up() {
  [ "$(id -u)" = 0 ] || die "up: run as root (it installs packages and starts daemons)"
  install_packages
  write_conf
  start_munge
  pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld -c || die "slurmctld did not start (see $LOGS/slurmctld.log)"
  pgrep -x slurmd >/dev/null || /usr/sbin/slurmd -N localhost || die "slurmd did not start (see $LOGS/slurmd.log)"
  for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    case "$state" in
      idle*|mixed*|allocated*) echo "local_slurm: node localhost is $state ($(nproc) CPUs)"; return ;;
    esac
    sleep 1
  done
  die "the node did not come up within 60 s (state: ${state:-unknown}; see $LOGS/)"
}

down() {
  [ "$(id -u)" = 0 ] || die "down: run as root"
  for daemon in slurmd slurmctld; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  for _ in $(seq 30); do
    pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
    sleep 1
  done
  pkill -x munged 2>/dev/null || true
  rm -rf "$STATE"  # the jobs: a later `up` starts from an empty queue
  echo "local_slurm: stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) sinfo -N ;;
  *) die "usage: scripts/local_slurm.sh up|down|status" ;;
esac

#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurmctld and slurmd) for the tests,
# started for one command and stopped after it, leaving nothing behind:
#
#   scripts/slurm-cluster.sh -- COMMAND...   runs COMMAND with SLURM_CONF
#                                            pointing at the cluster
#
# munged runs as the munge user with the key Debian's package made; the
# configuration lives in a temporary directory with non-default ports,
# the node line from `slurmd -C`, proctrack/linuxproc and task/none (no
# cgroups needed). Exits 77 (a skip, with the reason on its last line)
# where the daemons cannot run: not root, or the packages cannot be
# installed.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--" ] && shift
[ "$#" -gt 0 ] || { echo "usage: scripts/slurm-cluster.sh -- COMMAND..."; exit 2; }

skip() { echo "$1"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "a Slurm cluster needs root (slurmd runs tasks as their users)"
scripts/setup.sh slurmctld slurmd slurm-client munge >/dev/null ||
  skip "the Slurm packages (slurmctld slurmd slurm-client munge) could not be installed"

dir=$(mktemp -d /tmp/shmpi-slurm.XXXXXX)
chmod 755 "$dir"
pids=()
munged_started=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  # A step's slurmstepd outlives slurmd by a moment: let it finish.
  for _ in $(seq 1 50); do
    pgrep -x slurmstepd >/dev/null || break
    sleep 0.1
  done
  if [ -n "$munged_started" ]; then
    pkill -u munge -x munged 2>/dev/null
    for _ in $(seq 1 50); do
      pgrep -u munge -x munged >/dev/null || break
      sleep 0.1
    done
  fi
  rm -rf "$dir"
}
trap cleanup EXIT

# munge: Debian's postinst made /etc/munge/munge.key.
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- munged || skip "munged could not start"
  munged_started=1
fi

host=$(hostname -s)
node=$(slurmd -C 2>/dev/null | head -n 1 | sed -E 's/^NodeName=[^ ]+ //; s/ UpTime=.*//')
[ -n "$node" ] || skip "slurmd -C gave no node description"
mkdir -p "$dir/state" "$dir/spool"
cat >"$dir/slurm.conf" <<EOF
ClusterName=shmpi-test
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=$host $node State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$dir/slurm.conf

slurmctld -D -i >"$dir/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D >"$dir/slurmd.out" 2>&1 &
pids+=($!)
# Wait until the node is idle.
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1)
  [ "$state" = "idle" ] && break
  sleep 0.5
done
if [ "$state" != "idle" ]; then
  tail -n 5 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/*.out 2>/dev/null
  skip "the Slurm node did not become idle (state: ${state:-none})"
fi
echo "slurm: node $host idle ($node)"
"$@"

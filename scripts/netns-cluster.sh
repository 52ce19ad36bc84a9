#!/usr/bin/env bash
# Two (or more) "hosts" on this machine, made of Linux network namespaces,
# and a command run while they exist:
#
#   scripts/netns-cluster.sh [--hosts N] [--slots S] -- COMMAND [ARGS...]
#
# Each host is a network namespace with a veth into a bridge in the root
# namespace. Open MPI starts its daemon on a host through an rsh agent
# that enters the namespace with private UTS, mount and IPC namespaces,
# mounts a private tmpfs on /dev/shm and sets the host name — so each host
# has its own shared memory and the hosts can talk only over TCP. COMMAND
# runs with SHMPI_CLUSTER set to a directory describing the hosts; every
# job the library's launcher (src/mpirun.rs, `shmpi mpirun`,
# scripts/mpirun.sh) builds then runs across them.
#
# When a host's daemon ends, the agent records what was left in that host's
# /dev/shm (SHMPI_CLUSTER/leftovers/); this script fails if any of it is
# shmpi's. Names and the subnet are unique per run; namespaces, links and
# the bridge are removed on exit, failure or interrupt.
#
# Exit status: COMMAND's, 1 on leftovers, 77 when this machine refuses
# network namespaces (the reason is the last line printed).
set -uo pipefail

hosts=2 slots=2
while [ $# -gt 0 ]; do
  case $1 in
    --hosts) hosts=$2; shift 2 ;;
    --slots) slots=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--hosts N] [--slots S] -- COMMAND [ARGS...]" >&2; exit 2; }

skip() { echo "SKIP: network-namespace hosts unavailable: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (ip netns, mount)"
command -v ip >/dev/null || skip "iproute2's ip is not installed"
command -v unshare >/dev/null || skip "util-linux's unshare is not installed"

# Unique per run: a 4-hex-digit id names everything (interface names have
# at most 15 characters); the subnet 10.A.B.0/24 is picked among those no
# route on this machine uses yet.
id=$(printf '%04x' $(( ($$ + RANDOM) % 65536 )))
bridge="shb$id"
ns_of() { echo "shmpi-$id-h$1"; }
subnet=""
for _ in $(seq 1 50); do
  a=$(( RANDOM % 200 + 20 )) b=$(( RANDOM % 250 + 1 ))
  if ! ip -4 route show | grep -q "^10\.$a\.$b\."; then subnet="10.$a.$b"; break; fi
done
[ -n "$subnet" ] || skip "no free 10.x.y.0/24 subnet"

dir=$(mktemp -d /tmp/shmpi-cluster.XXXXXX)
chmod 755 "$dir"
mkdir -m 777 "$dir/leftovers"

cleanup() {
  local i
  for i in $(seq 1 "$hosts"); do
    ip link del "shv$id$i" 2>/dev/null
    ip netns del "$(ns_of "$i")" 2>/dev/null
  done
  ip link del "$bridge" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip link add "$bridge" type bridge 2>/dev/null || skip "cannot create a bridge (ip link add type bridge refused)"
ip addr add "$subnet.1/24" dev "$bridge" && ip link set "$bridge" up || skip "cannot configure the bridge"
: > "$dir/hostfile"
agent_cases=""
for i in $(seq 1 "$hosts"); do
  ns=$(ns_of "$i") addr="$subnet.$((i + 1))"
  ip netns add "$ns" 2>/dev/null || skip "ip netns add refused"
  ip link add "shv$id$i" type veth peer name eth0 netns "$ns" || skip "cannot create a veth pair"
  ip link set "shv$id$i" master "$bridge" up &&
    ip -n "$ns" addr add "$addr/24" dev eth0 &&
    ip -n "$ns" link set eth0 up &&
    ip -n "$ns" link set lo up || skip "cannot configure host $ns"
  echo "$addr slots=$slots" >> "$dir/hostfile"
  agent_cases+="  $addr) ns=$ns ;;"$'\n'
done
echo "$subnet.0/24" > "$dir/subnet"

# Open MPI runs `rsh-agent HOST COMMAND...` (as it would run ssh) to start
# its daemon on HOST. The daemon gets private UTS/mount/IPC namespaces, a
# host name and its own /dev/shm; once it ends, the agent records what was
# left in that /dev/shm, since nobody can look there afterwards.
cat > "$dir/rsh-agent" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
$agent_cases  *) echo "rsh-agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts --mount --ipc --propagation private sh -c '
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm || exit 1
  hostname "\$0"
  sh -c "\$1"
  rc=\$?
  ls -A /dev/shm > "$dir/leftovers/\$0.\$\$"
  exit \$rc' "\$ns" "\$*"
EOF
chmod 755 "$dir/rsh-agent"

echo "cluster: $hosts hosts on $subnet.0/24 ($(ns_of 1) ...), bridge $bridge, SHMPI_CLUSTER=$dir"
SHMPI_CLUSTER=$dir "$@"
status=$?

left=$(cat "$dir"/leftovers/* 2>/dev/null | grep -E '^shmpi\.' | sort -u)
if [ -n "$left" ]; then
  echo "left in the hosts' /dev/shm by shmpi:"; echo "$left"
  [ "$status" -eq 0 ] && status=1
fi
echo "cluster: $(ls "$dir/leftovers" | wc -l) host daemons ran; nothing of shmpi's left: $([ -z "$left" ] && echo yes || echo no)"
exit "$status"

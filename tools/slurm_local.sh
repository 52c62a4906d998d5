#!/usr/bin/env bash
# A real two-node SLURM cluster on this one machine, for tests.
#   tools/slurm_local.sh start DIR   # then: export SLURM_CONF=DIR/slurm.conf
#   tools/slurm_local.sh stop DIR    # safe to repeat, and after a failed start
#   tools/slurm_local.sh status DIR
# slurmctld runs in the root network namespace on the bridge address (.1); each of node1 and node2
# runs slurmd in its own network namespace (veth on a bridge, addresses .2 and .3), its own UTS
# namespace (hostname node1/node2, so MPI sees two hosts) and its own mount namespace (DIR/hosts
# bind-mounted over /etc/hosts there). Needs root (netns, veth, bridge, mount). Nothing under /etc
# is written; everything lives under DIR. Exit 2 when this machine cannot do it.
# Settings (environment): SLURM_LOCAL_SUBNET (first three octets, default 10.77.0),
# SLURM_LOCAL_PREFIX (names of the namespaces/links, default slt), SLURM_LOCAL_AUTH (none|munge,
# default none), SLURM_LOCAL_PORT (slurmctld port, default 16817; slurmd uses +1),
# SLURM_LOCAL_TIMEOUT (seconds to wait for idle nodes, default 60), SLURM_LOCAL_CRED_EXPIRE
# (step credential lifetime, also the delay before a requeued job starts again; default 10).
# Inside jobs, OpenMPI's TCP transport finds the node's eth0 by itself (loopback is excluded by
# default); run MPI programs with: srun --mpi=pmix (and OMPI_ALLOW_RUN_AS_ROOT=1
# OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 when root).
set -uo pipefail

cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop|status DIR" >&2; exit 64; }
if [ "$cmd" = start ] && [ "$(id -u)" -ne 0 ]; then
  echo "slurm_local: cannot start: must run as root (network namespaces, veth, bridge, mounts)" >&2
  exit 2
fi
[ "$cmd" = start ] || [ -d "$DIR" ] || exit 0   # stop/status of a DIR never started
mkdir -p "$DIR" || { echo "slurm_local: cannot create $DIR" >&2; exit 2; }
DIR=$(cd "$DIR" && pwd -P)

SUBNET=${SLURM_LOCAL_SUBNET:-10.77.0}
PFX=${SLURM_LOCAL_PREFIX:-slt}
AUTH=${SLURM_LOCAL_AUTH:-none}
PORT=${SLURM_LOCAL_PORT:-16817}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
# A requeued job may start again only cred_expire+1 s later (default 120); 5 is Slurm's minimum.
CRED_EXPIRE=${SLURM_LOCAL_CRED_EXPIRE:-10}
NODES=(node1 node2)
BR=${PFX}br0
SBIN=/usr/sbin

log() { echo "slurm_local: $*" >&2; }
die2() { echo "slurm_local: cannot start: $*" >&2; exit 2; }

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Kill the daemons named by pid files: TERM to all at once, up to 10 s, then KILL.
kill_pidfiles() {
  local f pid pids=()
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    if pid_alive "$pid"; then kill -TERM "$pid" 2>/dev/null && pids+=("$pid"); fi
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${pids[@]}"; do pid_alive "$pid" && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null; done
  rm -f "$@"
}

do_stop() {
  local i ns pids
  # The names used at start (another prefix/subnet may be set now). Without net.env this DIR
  # created no network: leave namespaces and links alone (they may be another cluster's).
  if [ ! -f "$DIR/net.env" ]; then
    kill_pidfiles "$DIR"/run/*.pid
    return 0
  fi
  . "$DIR/net.env"
  # Job processes first (slurmstepd, tasks: everything in the node namespaces but slurmd).
  for i in 0 1; do
    ns=${PFX}${NODES[$i]}
    ip netns list 2>/dev/null | grep -qw "^$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null | grep -vxF "$(cat "$DIR/run/slurmd-${NODES[$i]}.pid" 2>/dev/null || echo none)")
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  done
  kill_pidfiles "$DIR/run/slurmctld.pid" "$DIR/run/slurmd-${NODES[0]}.pid" "$DIR/run/slurmd-${NODES[1]}.pid"
  for i in 0 1; do
    ns=${PFX}${NODES[$i]}
    if ip netns list 2>/dev/null | grep -qw "^$ns"; then
      pids=$(ip netns pids "$ns" 2>/dev/null)
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
      for _ in $(seq 25); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.2; done
      ip netns del "$ns" 2>/dev/null
    fi
    ip link del "${PFX}v$((i + 1))" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  kill_pidfiles "$DIR/run/munged.pid"
  rm -f "$DIR/net.env"
  return 0
}

do_status() {
  local f
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    if pid_alive "$(cat "$f")"; then echo "$(basename "$f" .pid): running ($(cat "$f"))"; else echo "$(basename "$f" .pid): dead"; fi
  done
  ip netns list | grep "^$PFX" || true
  SLURM_CONF=$DIR/slurm.conf sinfo -N 2>/dev/null || true
}

write_conf() {
  local mem=$1 auth_lines
  if [ "$AUTH" = munge ]; then
    auth_lines="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=$CRED_EXPIRE"
  else
    auth_lines="AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=$CRED_EXPIRE"
  fi
  cat >"$DIR/slurm.conf" <<EOF
# Written by tools/slurm_local.sh: a two-node test cluster on one machine.
ClusterName=engramlocal
SlurmctldHost=$(hostname -s)($SUBNET.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
$auth_lines
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
TmpFS=$DIR/tmp/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$DIR/plugstack.conf
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
MpiDefault=pmix
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=2
MinJobAge=300
InactiveLimit=0
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
UnkillableStepTimeout=30
NodeName=node1 NodeAddr=$SUBNET.2 NodeHostname=node1 CPUs=2 RealMemory=$mem State=UNKNOWN
NodeName=node2 NodeAddr=$SUBNET.3 NodeHostname=node2 CPUs=2 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF
  : >"$DIR/plugstack.conf"
  cat >"$DIR/hosts" <<EOF
127.0.0.1 localhost
$SUBNET.1 $(hostname -s) slurmctld
$SUBNET.2 node1
$SUBNET.3 node2
EOF
}

start_munge() {
  mkdir -p "$DIR/munge" && chmod 0700 "$DIR/munge"
  if [ ! -s "$DIR/munge/munge.key" ]; then
    if [ -x $SBIN/mungekey ]; then
      $SBIN/mungekey --create --keyfile="$DIR/munge/munge.key" --force >/dev/null 2>&1 || return 1
    else
      dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none || return 1
    fi
  fi
  chmod 0600 "$DIR/munge/munge.key"
  # --force: DIR may sit below a world-writable directory such as /tmp.
  $SBIN/munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" || return 1
}

dump_logs() {
  local f
  for f in "$DIR"/log/*.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
  SLURM_CONF=$DIR/slurm.conf scontrol show nodes >&2 2>&1 || true
}

do_start() {
  [ "$(id -u)" -eq 0 ] || die2 "must run as root (network namespaces, veth, bridge, mounts)"
  local b
  for b in slurmctld slurmd slurmstepd; do [ -x $SBIN/$b ] || die2 "$SBIN/$b not installed"; done
  for b in ip unshare nsenter sinfo scontrol; do command -v $b >/dev/null || die2 "$b not found"; done
  [ "$AUTH" = munge ] && { [ -x $SBIN/munged ] || die2 "$SBIN/munged not installed"; }
  [ "$AUTH" = none ] || [ "$AUTH" = munge ] || die2 "SLURM_LOCAL_AUTH must be none or munge"
  # Leftovers of an earlier run in DIR.
  [ -f "$DIR/net.env" ] || [ -d "$DIR/run" ] && do_stop
  local t0=$SECONDS
  # Probe the capabilities before anything else.
  ip netns add "${PFX}probe" 2>/dev/null || die2 "'ip netns add' failed (needs CAP_SYS_ADMIN)"
  ip netns del "${PFX}probe"
  if ip link show "$BR" >/dev/null 2>&1; then die2 "bridge $BR already exists (another cluster? set SLURM_LOCAL_PREFIX)"; fi
  if ip -br addr | grep -q " $SUBNET\.1/"; then die2 "$SUBNET.1 already in use (set SLURM_LOCAL_SUBNET)"; fi

  mkdir -p "$DIR"/{state,run,log,spool/node1,spool/node2,tmp/node1,tmp/node2}
  rm -f "$DIR"/log/*.log "$DIR"/run/*.pid
  local mem
  mem=$(awk '/MemTotal/{print int($2/1024/4)}' /proc/meminfo)
  [ "$mem" -gt 8192 ] && mem=8192
  [ "$mem" -lt 256 ] && mem=256
  write_conf "$mem"
  printf 'PFX=%q\nSUBNET=%q\nBR=%q\n' "$PFX" "$SUBNET" "$BR" >"$DIR/net.env"

  # Network: a bridge in the root namespace; per node a namespace with a veth named eth0.
  ip link add "$BR" type bridge || die2 "cannot create a bridge"
  ip addr add "$SUBNET.1/24" dev "$BR" && ip link set "$BR" up || { do_stop; die2 "cannot configure $BR"; }
  local i n ns v
  for i in 0 1; do
    n=${NODES[$i]}; ns=${PFX}$n; v=${PFX}v$((i + 1))
    { ip netns add "$ns" &&
      ip link add "$v" type veth peer name "${v}p" &&
      ip link set "$v" master "$BR" && ip link set "$v" up &&
      ip link set "${v}p" netns "$ns" &&
      ip -n "$ns" link set "${v}p" name eth0 &&
      ip -n "$ns" addr add "$SUBNET.$((i + 2))/24" dev eth0 &&
      ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up; } ||
      { do_stop; die2 "cannot create namespace/veth for $n"; }
  done

  if [ "$AUTH" = munge ]; then start_munge || { dump_logs; do_stop; die2 "munged did not start"; }; fi

  # -c: start from empty state (a test cluster). The daemons fork and write their pid files.
  SLURM_CONF=$DIR/slurm.conf $SBIN/slurmctld -c -f "$DIR/slurm.conf" ||
    { dump_logs; do_stop; echo "slurm_local: slurmctld failed to start" >&2; exit 1; }
  for i in 0 1; do
    n=${NODES[$i]}; ns=${PFX}$n
    # Own UTS (hostname) and mount namespace (/etc/hosts knowing node1/node2) per node.
    # nsenter --net rather than 'ip netns exec': the latter remounts /sys, which hides
    # /sys/fs/cgroup, and slurmd 22.05 refuses to start without a cgroup filesystem.
    SLURM_CONF=$DIR/slurm.conf nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private -- \
      /bin/sh -c 'hostname "$1" && mount --bind "$2/hosts" /etc/hosts && exec '$SBIN'/slurmd -f "$2/slurm.conf" -N "$1"' \
      sh "$n" "$DIR" </dev/null >>"$DIR/log/slurmd-$n.stdout" 2>&1 ||
      { dump_logs; do_stop; echo "slurm_local: slurmd $n failed to start" >&2; exit 1; }
  done

  # Wait for both nodes idle.
  export SLURM_CONF=$DIR/slurm.conf
  local states=""
  while [ $((SECONDS - t0)) -lt "$TIMEOUT" ]; do
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null | sort -u | tr '\n' ' ')
    [ "$states" = "node1 idle node2 idle " ] && break
    sleep 0.5
  done
  if [ "$states" != "node1 idle node2 idle " ]; then
    echo "slurm_local: nodes not idle after ${TIMEOUT}s: '$states'" >&2
    dump_logs
    exit 1
  fi
  log "two nodes idle after $((SECONDS - t0)) s (auth/$AUTH, pmix)"
  echo "export SLURM_CONF=$DIR/slurm.conf"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) echo "usage: $0 start|stop|status DIR" >&2; exit 64 ;;
esac

#!/usr/bin/env bash
# A one-node Ceph cluster for tests, from Debian's packages (ceph-mon, ceph-mgr, ceph-osd; Ceph 16.2).
#
#   tools/ceph-cluster.sh start DIR      bring it up in DIR (made if missing, must be empty or absent)
#   tools/ceph-cluster.sh stop DIR       stop its daemons (DIR is left for inspection; remove it yourself)
#   tools/ceph-cluster.sh stop-osd DIR   stop its OSD only (an outage: the monitor and manager stay up)
#   tools/ceph-cluster.sh start-osd DIR  start the OSD again and wait until its placement groups are
#                                        active again (at most CEPH_START_TIMEOUT_S seconds)
#
# One monitor on 127.0.0.1 (msgr2 and msgr1), one manager, one bluestore OSD on a sparse file,
# cephx, pool size 1, clone v2, snap-trim and recovery sleeps 0. Every path is under DIR: nothing
# is read from or written to /etc/ceph or /var/lib/ceph. On success DIR holds:
#   DIR/ceph.conf                 the cluster's configuration (clients pass it with -c / --conf)
#   DIR/ceph.client.admin.keyring the admin key (named in ceph.conf, so `ceph -c DIR/ceph.conf` works)
#   DIR/ceph.client.cairn.keyring client.cairn's key: `profile rbd` on pool "rbd"
# and the RBD pool "rbd" exists. `start` waits for HEALTH_OK (at most CEPH_START_TIMEOUT_S seconds,
# default 120) and fails with the cluster's own health detail otherwise.
#
# Ports: CEPH_MON_PORT (msgr2, default 3300) and CEPH_MON_PORT_V1 (msgr1, default 6789).
set -euo pipefail

CONNECT_TIMEOUT_S=${CEPH_CONNECT_TIMEOUT_S:-10}
START_TIMEOUT_S=${CEPH_START_TIMEOUT_S:-120}
PORT_V2=${CEPH_MON_PORT:-3300}
PORT_V1=${CEPH_MON_PORT_V1:-6789}
OSD_BYTES=${CEPH_OSD_BYTES:-$((8 << 30))}

die() { echo "ceph-cluster: $*" >&2; exit 1; }

usage() { die "usage: $0 start|stop|stop-osd|start-osd DIR"; }

# Every ceph CLI call goes through here: never without a connect timeout (it hangs forever with
# the monitor down).
cephc() { ceph --connect-timeout "$CONNECT_TIMEOUT_S" -c "$DIR/ceph.conf" "$@"; }

write_conf() {
    local fsid=$1
    cat >"$DIR/ceph.conf" <<EOF
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$PORT_V2,v1:127.0.0.1:$PORT_V1]
public_addr = 127.0.0.1
ms_bind_ipv6 = false
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
run_dir = $DIR/run
pid_file = $DIR/run/\$name.pid
admin_socket = $DIR/run/\$cluster-\$name.asok
log_file = $DIR/log/\$cluster-\$name.log
crash_dir = $DIR/crash
exporter_sock_dir = $DIR/run
mon_data = $DIR/mon/\$cluster-\$id
mgr_data = $DIR/mgr/\$cluster-\$id
osd_data = $DIR/osd/\$cluster-\$id
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_osd_initial_require_min_compat_client = mimic
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
rbd_default_clone_format = 2
mon_allow_pool_delete = true
# Scratch disks are often nearly full: warn (and stop the monitor) only when really out of space.
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mon]
keyring = \$mon_data/keyring

[mgr]
keyring = \$mgr_data/keyring

[osd]
keyring = \$osd_data/keyring
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $OSD_BYTES
osd_memory_target = 1073741824
osd_snap_trim_sleep = 0
osd_snap_trim_sleep_hdd = 0
osd_snap_trim_sleep_ssd = 0
osd_snap_trim_sleep_hybrid = 0
osd_recovery_sleep = 0
osd_recovery_sleep_hdd = 0
osd_recovery_sleep_ssd = 0
osd_recovery_sleep_hybrid = 0

[client]
keyring = $DIR/ceph.\$name.keyring
EOF
}

start_mon() {
    local fsid=$1
    mkdir -p "$DIR/mon/ceph-a"
    ceph-authtool --create-keyring "$DIR/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
    ceph-authtool --create-keyring "$DIR/ceph.client.admin.keyring" --gen-key -n client.admin \
        --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
    ceph-authtool "$DIR/mon.keyring" --import-keyring "$DIR/ceph.client.admin.keyring" >/dev/null
    monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$PORT_V2,v1:127.0.0.1:$PORT_V1]" \
        "$DIR/monmap" >/dev/null
    ceph-mon -c "$DIR/ceph.conf" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/mon.keyring"
    ceph-mon -c "$DIR/ceph.conf" -i a
}

start_mgr() {
    mkdir -p "$DIR/mgr/ceph-x"
    cephc auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' mds 'allow *' \
        -o "$DIR/mgr/ceph-x/keyring"
    ceph-mgr -c "$DIR/ceph.conf" -i x
}

start_osd() {
    local uuid id
    uuid=$(cat /proc/sys/kernel/random/uuid)
    id=$(cephc osd new "$uuid")
    [ "$id" = 0 ] || die "expected OSD id 0, the monitor gave $id"
    mkdir -p "$DIR/osd/ceph-0"
    cephc auth get-or-create osd.0 mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' \
        -o "$DIR/osd/ceph-0/keyring"
    ceph-osd -c "$DIR/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/osd-mkfs.log" 2>&1 \
        || die "OSD mkfs failed; see $DIR/log/osd-mkfs.log"
    ceph-osd -c "$DIR/ceph.conf" -i 0 2>>"$DIR/log/osd-start.log"
}

make_rbd_pool() {
    cephc osd pool create rbd 8 8 >/dev/null
    cephc osd pool application enable rbd rbd >/dev/null
    rbd -c "$DIR/ceph.conf" pool init rbd
    cephc auth get-or-create client.cairn mon 'profile rbd' osd 'profile rbd pool=rbd' \
        mgr 'profile rbd pool=rbd' -o "$DIR/ceph.client.cairn.keyring"
}

# Polls the cluster's own health until HEALTH_OK, at most START_TIMEOUT_S seconds from `since`.
wait_health_ok() {
    local since=$1 health=""
    while :; do
        health=$(cephc health 2>&1 || true)
        case $health in HEALTH_OK*) return 0 ;; esac
        if [ $(($(date +%s) - since)) -ge "$START_TIMEOUT_S" ]; then
            echo "ceph-cluster: no HEALTH_OK after ${START_TIMEOUT_S}s; last answer:" >&2
            cephc health detail >&2 || echo "$health" >&2
            echo "ceph-cluster: daemon logs are in $DIR/log" >&2
            return 1
        fi
        sleep 0.5
    done
}

start() {
    local since fsid
    since=$(date +%s)
    for tool in ceph ceph-mon ceph-mgr ceph-osd ceph-authtool monmaptool rbd; do
        command -v "$tool" >/dev/null || die "$tool not found (apt-get install ceph-mon ceph-mgr ceph-osd ceph-common)"
    done
    if [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
        die "$DIR is not empty (stop and remove the old cluster first)"
    fi
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    mkdir -p "$DIR/run" "$DIR/log" "$DIR/crash"
    fsid=$(cat /proc/sys/kernel/random/uuid)
    write_conf "$fsid"
    start_mon "$fsid"
    start_mgr
    start_osd
    make_rbd_pool
    wait_health_ok "$since" || { stop; exit 1; }
    echo "ceph-cluster: HEALTH_OK in $(($(date +%s) - since))s; conf $DIR/ceph.conf"
}

# Stops the daemon of one pid file and waits (bounded) for it to exit.
stop_daemon() {
    local pidfile=$1 pid n
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for n in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# Stops the daemons through their pid files.
stop() {
    local pidfile
    [ -d "$DIR/run" ] || return 0
    for pidfile in "$DIR"/run/osd.*.pid "$DIR"/run/mgr.*.pid "$DIR"/run/mon.*.pid; do
        stop_daemon "$pidfile"
    done
}

stop_osd() {
    [ -f "$DIR/run/osd.0.pid" ] || die "no OSD runs in $DIR"
    stop_daemon "$DIR/run/osd.0.pid"
}

# Starts the stopped OSD and waits for HEALTH_OK (its placement groups active again).
restart_osd() {
    local since
    since=$(date +%s)
    [ -f "$DIR/ceph.conf" ] || die "no cluster in $DIR"
    [ -f "$DIR/run/osd.0.pid" ] && die "the OSD of $DIR runs already"
    ceph-osd -c "$DIR/ceph.conf" -i 0 2>>"$DIR/log/osd-start.log"
    wait_health_ok "$since"
}

[ $# -eq 2 ] || usage
DIR=$2
case $1 in
    start) start ;;
    stop) DIR=$(cd "$DIR" 2>/dev/null && pwd) || exit 0; stop ;;
    stop-osd) DIR=$(cd "$DIR" && pwd); stop_osd ;;
    start-osd) DIR=$(cd "$DIR" && pwd); restart_osd ;;
    *) usage ;;
esac

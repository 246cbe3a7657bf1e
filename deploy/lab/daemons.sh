# start_NAME functions for each lab daemon; sourced by `up` and `restart`.
# Each is idempotent: a daemon whose lab pid file names a live process is left alone.

start_munged() {
    pid_alive munged && return
    # munged insists that its log and pid directories belong to it alone.
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 "$LAB_DIR/munge"
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
        --log-file="$LAB_DIR/munge/munged.log"
    ln -sf /run/munge/munged.pid "$RUN_DIR/munged.pid"
    wait_for munged 20 munge -n
    log "started munged"
}

start_mariadb() {
    pid_alive mariadb && return
    install -d -o mysql -g root -m 0755 /run/mysqld
    # mariadbd writes its pid file as mysql: keep it in mysql's directory, linked from ours.
    /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mariadb.pid \
        --log-error="$LOG_DIR/mariadb.log" </dev/null >/dev/null 2>&1 &
    ln -sf /run/mysqld/mariadb.pid "$RUN_DIR/mariadb.pid"
    wait_for MariaDB 60 mariadb -u root -e 'SELECT 1'
    log "started mariadb"
}

# The Dagster deployment's database (runs, event logs, schedules), on loopback only, from
# Debian's package and its default cluster.
start_postgres() {
    pid_alive postgres && return
    local version data
    version=$(ls /usr/lib/postgresql | sort -V | tail -1)
    data=/var/lib/postgresql/$version/main
    # A cluster the package started on its own (where nothing stops it) holds the port.
    pg_ctlcluster "$version" main status >/dev/null 2>&1 && pg_ctlcluster "$version" main stop
    install -d -o postgres -g postgres -m 2775 /run/postgresql
    [ -f "$LOG_DIR/postgres.log" ] || install -o postgres -g postgres -m 0640 /dev/null "$LOG_DIR/postgres.log"
    runuser -u postgres -- "/usr/lib/postgresql/$version/bin/pg_ctl" start --silent --log="$LOG_DIR/postgres.log" \
        --pgdata="$data" -o "-c config_file=/etc/postgresql/$version/main/postgresql.conf -c listen_addresses=127.0.0.1"
    wait_for PostgreSQL 60 runuser -u postgres -- psql -qAt -c 'SELECT 1'
    head -1 "$data/postmaster.pid" >"$RUN_DIR/postgres.pid"
    log "started postgres $version on 127.0.0.1:5432"
}

start_slurmdbd() {
    pid_alive slurmdbd && return
    /usr/sbin/slurmdbd
    wait_for slurmdbd 60 sacctmgr -n list cluster
    log "started slurmdbd"
}

start_slurmctld() {
    pid_alive slurmctld && return
    /usr/sbin/slurmctld
    wait_for slurmctld 60 scontrol ping
    log "started slurmctld"
}

start_slurmd() {
    pid_alive slurmd && return
    /usr/sbin/slurmd
    log "started slurmd"
}

# The sshd is the login node. On a site, the login node sees what jobs write through an NFS
# client that caches attributes and directory entries, negative ones included; here sshd gets a
# mount namespace of its own in which the cluster user's home (the run folders) is a FUSE view
# that caches the same way, while jobs (slurmd) write through the direct path.
# LAB_FS_CACHE is "ENTRY:ATTR" seconds (default 10:3; NFS's defaults are about 60:3), or "off".
start_sshd() {
    pid_alive sshd && return
    install -d -m 0755 /run/sshd
    stop_daemon login-view
    local cache=${LAB_FS_CACHE:-10:3} home
    home=$(getent passwd "$LAB_USER" | cut -d: -f6)
    if [ "$cache" = off ]; then
        /usr/sbin/sshd -f "$LAB_DIR/ssh/sshd_config" -E "$LOG_DIR/sshd.log"
    else
        unshare --mount --propagation private -- bash -c '
            bindfs -f --multithreaded -o "entry_timeout=$1,negative_timeout=$1,attr_timeout=$2" "$3" "$3" \
                >>"$4/login-view.log" 2>&1 &
            echo $! >"$5"
            for _ in $(seq 100); do mountpoint -q "$3" && break; sleep 0.1; done
            mountpoint -q "$3" || { echo "the login view of $3 did not mount; see $4/login-view.log" >&2; exit 1; }
            exec /usr/sbin/sshd -f "$6" -E "$4/sshd.log"' \
            login-view "${cache%%:*}" "${cache##*:}" "$home" "$LOG_DIR" "$RUN_DIR/login-view.pid" "$LAB_DIR/ssh/sshd_config"
    fi
    wait_for sshd 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$LAB_SSH_PORT"
    log "started sshd on 127.0.0.1:$LAB_SSH_PORT (login node's view of $home caching: $cache)"
}

# The login node with a second factor, for the OpenSSH master-connection tests; without the
# caching view (the main login node's tests cover it). MaxSessions 2: the tests' commands
# outnumber the sessions sshd allows the master, as many run workers sharing one master do.
start_sshd_mfa() {
    pid_alive sshd-mfa && return
    install -d -m 0755 /run/sshd
    /usr/sbin/sshd -f "$LAB_DIR/ssh/sshd_mfa_config" -E "$LOG_DIR/sshd-mfa.log"
    wait_for sshd-mfa 20 bash -c "exec 3<>/dev/tcp/127.0.0.1/$LAB_SSH_MFA_PORT"
    log "started sshd on 127.0.0.1:$LAB_SSH_MFA_PORT (a second factor after the key)"
}

# The node is usable once slurmctld sees it idle (it may be down after a restart while
# slurmd re-registers).
wait_node_idle() {
    wait_for "node $(hostname -s) idle" 90 bash -c \
        "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
}

# Builds a Python environment once, whatever the number of runs asking at once. $1 the
# environment's folder, $2 its staged inputs (requirements.txt, constraints.txt, wheels/,
# setup.sh), $3 the installer (pip or uv), $4 the base interpreter, $5 "offline" (install from
# wheels/ only) or "index", $6 the version of dagster-slurm-launcher it must hold.
# Prints "ready" (built before), "built", or fails with the installer's last lines on stderr.
# The lock is a directory (see claim.sh). While its holder builds, a heartbeat touches it every
# minute (for as long as the holder or its installer lives); a waiter breaks one untouched for
# 5 minutes, under a second lock so that two waiters never both break it.
readonly env=$1 stage=$2 installer=$3 python=$4 source=$5 version=$6
readonly lock=$env.build-lock token=$(hostname).$$.$RANDOM
umask 077
mkdir -p -- "${env%/*}" || exit 1
deadline=$((SECONDS + 2400))
until mkdir -- "$lock" 2>/dev/null; do
    [ -d "$lock" ] || { mkdir -- "$lock" 2>/dev/null && break; [ -d "$lock" ] || exit 1; }
    if [ -e "$env/.ready" ]; then echo ready; exit 0; fi
    if mkdir -- "$lock.break" 2>/dev/null; then
        now=$lock.now.$token
        if : >"$now" 2>/dev/null; then
            age=$(( $(stat -c %Y "$now") - $(stat -c %Y "$lock" 2>/dev/null || stat -c %Y "$now") ))
            rm -f -- "$now"
            if [ "$age" -gt 300 ] && mv -- "$lock" "$lock.stale.$token" 2>/dev/null; then rm -rf -- "$lock.stale.$token"; fi
        fi
        rmdir -- "$lock.break"
    elif [ -d "$lock.break" ] && [ $(( $(date +%s) - $(stat -c %Y "$lock.break" 2>/dev/null || date +%s) )) -gt 60 ]; then
        rmdir -- "$lock.break" 2>/dev/null  # a breaker that died between its two mkdirs
    fi
    [ "$SECONDS" -lt "$deadline" ] || {
        echo "another build of $env held its lock $lock for 40 minutes; if no build runs, remove the lock" >&2; exit 1; }
    sleep 1
done
: >"$lock/$token"
installer_pid=
# Away from stdout: a sleep holding it open would keep the command from ending. A failed touch
# (a filesystem hiccup) is tried again next minute.
( while sleep 60; do
      [ -e "$lock/$token" ] || exit 0
      kill -0 $$ 2>/dev/null || kill -0 "$(cat -- "$lock/$token.pid" 2>/dev/null)" 2>/dev/null || exit 0
      touch -- "$lock" 2>/dev/null
  done ) >/dev/null 2>&1 &
beat=$!
trap 'kill "$beat" 2>/dev/null; rm -f -- "$lock/$token.pid"; rm -- "$lock/$token" 2>/dev/null && rmdir -- "$lock"' EXIT
# A stopped build stops its installer before it lets the lock go.
trap '[ -n "$installer_pid" ] && { pkill -TERM -P "$installer_pid"; kill "$installer_pid"; wait "$installer_pid"; } 2>/dev/null; exit 1' HUP INT TERM
# Whether the lock is still ours: a waiter breaks a lock untouched for 5 minutes.
held() { [ -e "$lock/$token" ] || { echo "the build lost its lock $lock (untouched for 5 minutes): not finishing it" >&2; exit 1; }; }
if [ -e "$env/.ready" ]; then echo ready; exit 0; fi
touch -- "$stage" 2>/dev/null  # in use: `shipped prune` judges it by this
held; rm -rf -- "$env"
log=$env.build.log
# The cluster user's login environment (the module command: bash -l's start-up files, in its
# order), then the executor's setup lines, as a step's batch script has them; what they print
# or read from stdin is not the build's, but shown if the setup lines fail.
{ [ -r /etc/profile ] && . /etc/profile
  for f in "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile"; do [ -r "$f" ] && { . "$f"; break; }; done
} </dev/null >/dev/null 2>&1
. "$stage/setup.sh" </dev/null >"$log" 2>&1 || {
    printf "the executor's setup lines failed on the login node:\n%s\n" "$(tail -n 20 -- "$log")" >&2; exit 1; }
cd -- "$stage" || exit 1
offline=; [ "$source" = offline ] && offline="--no-index --find-links wheels"
{
    case $installer in
        pip) "$python" -m venv -- "$env" && "$env/bin/python" -m pip install --no-input --disable-pip-version-check \
                 $offline -r requirements.txt -c constraints.txt ;;
        uv) uv venv --quiet --python "$python" -- "$env" && uv pip install --python "$env/bin/python" \
                 $offline -r requirements.txt -c constraints.txt ;;
        *) echo "unknown installer $installer"; false ;;
    esac
} >"$log" 2>&1 </dev/null &
installer_pid=$!
echo "$installer_pid" >"$lock/$token.pid"
wait "$installer_pid" || { tail -n 30 -- "$log" >&2; held; rm -rf -- "$env"; exit 1; }
installer_pid=
found=$("$env/bin/python" -c 'import importlib.metadata as m; print(m.version("dagster-slurm-launcher"))' 2>>"$log")
if [ "$found" != "$version" ]; then
    echo "the built environment holds dagster-slurm-launcher ${found:-(none)}, not $version" >&2
    held; rm -rf -- "$env"; exit 1
fi
rm -f -- "$log"
held; : >"$env/.ready" && rm -rf -- "$stage" && echo built

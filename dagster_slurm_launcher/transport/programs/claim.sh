# $1 the claims folder, $2 the job name, $3 the ids the submitter knows (space-separated), then
# the sbatch command line. Prints "claimed <id>" if another submitter's job is the name's last
# one, else sbatch's output. The lock is a directory: mkdir is atomic on every shared
# filesystem, where flock may be local to one node (BeeGFS by default, Lustre `localflock`). A
# lock older than 5 minutes by the filesystem's own clock (a submitter whose connection died)
# is broken by renaming it, which only one waiter can do; a holder removes the lock only if it
# still holds its token there, never a lock that replaced its own. submit_jobs.sh runs this
# text in a subshell per job, so it forks as few processes as it can (about five per job).
dir=$1 name=$2 known=" $3 "; shift 3
[ -d "$dir" ] || mkdir -p -m 0700 "$dir" || exit 1
lock=$dir/$name.claim-lock token=$(hostname).$$.$RANDOM
deadline=$((SECONDS + 420))
until mkdir "$lock" 2>/dev/null; do
    if [ ! -d "$lock" ]; then mkdir "$lock" && break || exit 1; fi  # quota, permissions: mkdir says
    now=$dir/.now.$token
    if touch "$now" 2>/dev/null; then
        age=$(( $(stat -c %Y "$now") - $(stat -c %Y "$lock" 2>/dev/null || stat -c %Y "$now") ))
        rm -f "$now"
        if [ "$age" -gt 300 ] && mv "$lock" "$lock.stale.$token" 2>/dev/null; then rm -rf "$lock.stale.$token"; fi
    fi
    [ "$SECONDS" -lt "$deadline" ] || { echo "the claim lock $lock stayed taken for 7 minutes" >&2; exit 1; }
    sleep 0.1
done
: >"$lock/$token"
trap 'rm "$lock/$token" 2>/dev/null && rmdir "$lock"' EXIT
c=
if [ -f "$dir/$name" ]; then c=$(<"$dir/$name"); fi
case "$known" in *" $c "*) ;; *) if [ -n "$c" ]; then echo "claimed $c"; exit 0; fi ;; esac
out=$("$@") || exit $?
printf '%s\n' "${out%%;*}" >"$dir/$name.new" && mv -f "$dir/$name.new" "$dir/$name" && echo "$out"

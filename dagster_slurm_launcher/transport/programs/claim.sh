# $1 the claims folder, $2 the number of names claimed, then for each name: the name, the ids
# the submitter knows for it (space-separated), and what the record adds after the job id (a
# packed step's folder; empty for a job of its own); then the sbatch command line. A job claims
# its own name; a pack claims the names of the steps it runs. Prints "claimed <id>" if another
# submitter's job is a name's last one (nothing is submitted), else sbatch's output, and then
# records the new job's id under every name. A pack records "pending <folder>" under each name
# before sbatch: a submitter that dies in between leaves names that say where to look. The locks are directories: mkdir is atomic on
# every shared filesystem, where flock may be local to one node (BeeGFS by default, Lustre
# `localflock`); the submitter sorts the names, so two packs never wait on each other. A lock
# older than 5 minutes by the filesystem's own clock (a submitter whose connection died) is
# broken by renaming it, which only one waiter can do; a holder removes a lock only if it still
# holds its token there, never a lock that replaced its own. submit_jobs.sh runs this text in a
# subshell per job, so it forks as few processes as it can (about five per name).
dir=$1 count=$2; shift 2
names=() known=() record=() held=()
for ((i = 0; i < count; i++)); do names+=("$1") known+=(" $2 ") record+=("$3"); shift 3; done
[ -d "$dir" ] || mkdir -p -m 0700 "$dir" || exit 1
token=$(hostname).$$.$RANDOM
trap 'for lock in "${held[@]}"; do rm "$lock/$token" 2>/dev/null && rmdir "$lock"; done' EXIT
deadline=$((SECONDS + 420))
for name in "${names[@]}"; do
    lock=$dir/$name.claim-lock
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
    held+=("$lock")
done
for ((i = 0; i < count; i++)); do
    c=
    if [ -f "$dir/${names[i]}" ]; then c=$(<"$dir/${names[i]}"); c=${c%% *}; fi
    case "${known[i]}" in *" $c "*) ;; *) if [ -n "$c" ]; then echo "claimed $c"; exit 0; fi ;; esac
done
record() {
    for ((i = 0; i < count; i++)); do
        new=$dir/${names[i]}.new
        printf '%s\n' "$1${record[i]:+ ${record[i]}}" >"$new" && mv -f "$new" "$dir/${names[i]}" || return 1
    done
}
[ -z "${record[0]}" ] || record pending || exit 1
out=$("$@") || exit $?
record "${out%%;*}" || exit 1
echo "$out"

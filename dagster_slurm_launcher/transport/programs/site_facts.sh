# Facts about the login node and the run folders' filesystem, for `dagster-slurm check`.
# $1 the run folders' base directory (created if missing). stdout: "<name>\t<value>" lines, a
# value's newlines turned into " | "; a fact that cannot be known here is left out.
base=$1
fact() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | sed ':a;N;$!ba;s/\n/ | /g')"; }
mkdir -p -m 0700 -- "$base" || exit 1
fact host "$(hostname)"
fact sbatch "$(sbatch --version 2>&1)"
config=$(scontrol show config 2>/dev/null)
fact accounting "$(printf '%s\n' "$config" | sed -n 's/^AccountingStorageType *= *//p')"
fact min_job_age "$(printf '%s\n' "$config" | sed -n 's/^MinJobAge *= *//p')"
fact fs_type "$(stat -f -c %T -- "$base")"
fact free "$(df -Pk -- "$base" | awk 'NR==2 {print $4, $2, $6}')"  # KiB free, KiB in all, mount point
if command -v lfs >/dev/null; then fact quota "$(lfs quota -h -u "$(id -un)" -- "$base" 2>&1)"
elif command -v quota >/dev/null; then fact quota "$(quota -s 2>&1)"; fi
# The claim lock is a directory (see claim.sh): the second mkdir must fail, and the
# filesystem's clock (a stale lock's age) should agree with the login node's.
lock=$base/.check-lock.$$
if mkdir -- "$lock" 2>/dev/null; then
    if mkdir -- "$lock" 2>/dev/null; then fact lock "a second mkdir of the lock succeeded"; else fact lock exclusive; fi
    : >"$lock/now" && fact fs_clock_skew "$(( $(stat -c %Y -- "$lock/now") - $(date +%s) ))"
    rm -rf -- "$lock"
else
    fact lock "cannot create $lock"
fi

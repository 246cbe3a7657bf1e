# Writes many jobs' folders and submits each job under its claim, in order. $1 is claim.sh's
# text, run in a subshell for each job (one lock per name, as for a single submission); $2 the
# byte count of a tar archive at the head of stdin that holds each job's files under its index
# ("0/job.sh", "1/job.sh", ...); $3 a folder on the jobs' filesystem to unpack it in; then
# the messages that mean sbatch never reached the controller (the rest would not either).
# stdin, after the archive, per job: NUL-terminated fields - the job's folder, the claims
# folder, the number of names the job claims and for each claim.sh's three fields (the name,
# the ids the submitter knows, the record's addition), the number of files to
# create empty if missing (appended to, never truncated: a job that was submitted after all
# may write them), their names, the name of the file that is the batch script, the number of
# sbatch arguments, the arguments.
# Each job's files are renamed from the unpacked archive into place as one folder, so that a folder is never seen half written; a folder that exists (a
# job sent again) is kept as it is.
# stdout: the cluster's clock (UTC) before the first sbatch, then one line per job in order:
# "<n> submitted <sbatch output>", "<n> claimed <id>" (another submitter's job is the name's
# last: nothing submitted), "<n> unwritten <error>" (its folder could not be written: nothing
# submitted) or "<n> failed <exit status> <stderr, on one line>". After a failure whose stderr
# holds one of the messages, nothing more is done (the rest were not touched).
claim=$1 size=$2 base=$3
shift 3
umask 077
mkdir -p -- "$base" && stage=$(mktemp -d "$base/.submitting.XXXXXX") || exit 1
trap 'rm -rf -- "$stage"' EXIT
trap 'exit 1' HUP INT PIPE TERM
dd bs=65536 count="$size" iflag=count_bytes,fullblock status=none | tar -x -C "$stage" || exit 1
TZ=UTC date +%Y-%m-%dT%H:%M:%S || exit 1
field() { IFS= read -r -d '' "$1"; }
n=0
while field folder; do
    field claims && field nclaims && [[ $nclaims =~ ^[0-9]+$ ]] || exit 1
    members=() empty=() args=()
    for ((i = 0; i < 3 * nclaims; i++)); do field f || exit 1; members+=("$f"); done
    field nempty && [[ $nempty =~ ^[0-9]+$ ]] || exit 1
    for ((i = 0; i < nempty; i++)); do field f || exit 1; empty+=("$f"); done
    field script && field nargs && [[ $nargs =~ ^[0-9]+$ ]] || exit 1
    for ((i = 0; i < nargs; i++)); do field a || exit 1; args+=("$a"); done
    parent=${folder%/*}
    written=1
    if ! { [ -d "$parent" ] || mkdir -p -- "$parent"; } 2>"$stage/stderr" ||
        ! { [ -e "$folder" ] || mv -T -- "$stage/$n" "$folder"; } 2>"$stage/stderr"; then
        written=
    fi
    for f in "${empty[@]}"; do
        [ -z "$written" ] || { : >>"$folder/$f"; } 2>"$stage/stderr" || written=
    done
    if [ -z "$written" ]; then
        echo "$n unwritten $(tr '\n' ' ' <"$stage/stderr")"
        n=$((n + 1))
        continue
    fi
    # stderr first: a script that cannot be opened says so there too.
    out=$(set -- "$claims" "$nclaims" "${members[@]}" "${args[@]}"; eval "$claim" 2>"$stage/stderr" <"$folder/$script")
    rc=$?
    if [ "$rc" -ne 0 ]; then
        err=$(tr '\n' ' ' <"$stage/stderr")
        echo "$n failed $rc $err"
        for marker; do
            case "$err" in *"$marker"*) exit 0 ;; esac
        done
    else
        case "$out" in
            "claimed "*) echo "$n $out" ;;
            *) echo "$n submitted ${out##*$'\n'}" ;;
        esac
    fi
    n=$((n + 1))
done

# Removes shipped code and environments not used for a while. $1 the base folder, $2 that while
# in seconds, judged by the filesystem's clock; stdin: entries as list_shipped.sh names them
# ("code/<name>", "envs/<name>", "code/.incoming/<name>"), each followed by NUL. stdout:
# "removed <entry>" or "used <entry>" (a run used it since, or a build holds its lock: kept) per
# entry. Anything that is not one of those forms is refused (exit 1), so that no input can make
# it remove anything else. A lock is judged by its age like anything else (its holder touches it
# every minute). A removed entry first disappears by a rename, so no run finds half of it.
base=${1%/} age=$2 status=0
now=$base/.now.$$
: >"$now" && since=$(( $(stat -c %Y -- "$now") - age )) && rm -f -- "$now" || exit 1
while IFS= read -r -d '' entry; do
    case "$entry" in
        */.|*/..|*/.incoming/*/*|code/.incoming/.*|envs/.incoming/.*)
            echo "refused: $entry" >&2; status=1; continue ;;
        code/.incoming/?*|envs/.incoming/?*) ;;
        code/*/*|envs/*/*|code/.*|envs/.*) echo "refused: $entry" >&2; status=1; continue ;;
        code/?*|envs/?*) ;;
        *) echo "refused: $entry" >&2; status=1; continue ;;
    esac
    path=$base/$entry
    # An environment, or its inputs, while a build holds its lock.
    case "$entry" in envs/*) [ -d "$base/${entry%.stage}.build-lock" ] && [ "$entry" = "${entry%.build-lock}" ] \
        && { printf 'used %s\n' "$entry"; continue; } ;; esac
    used=$(stat -c %Y -- "$path/.last-used" 2>/dev/null || stat -c %Y -- "$path" 2>/dev/null) || continue
    if [ "$used" -ge "$since" ]; then printf 'used %s\n' "$entry"; continue; fi
    trash=$base/${entry%%/*}/.trash.$(hostname).$$.$RANDOM
    mv -T -- "$path" "$trash" && rm -rf -- "$trash" && printf 'removed %s\n' "$entry"
done
exit $status

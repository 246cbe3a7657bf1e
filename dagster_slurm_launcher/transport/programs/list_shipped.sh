# Lists what runs shipped under a base folder. $1 the base folder. Prints first "now <seconds
# since the epoch>" by the filesystem's clock (ages are judged by it, as the removal does), then
# one line per entry: "<kind> <name> <state> <last used, seconds since the epoch> <size in KiB>",
# kind "code" or "envs"; state "ready", "lock" (a build's, held or stale), or "partial" (an
# upload, build inputs, a build's log, or a folder that is not complete).
base=${1%/}
mkdir -p -- "$base" && now=$base/.now.$$ && : >"$now" && echo "now $(stat -c %Y -- "$now")" && rm -f -- "$now" || exit 1
for kind in code envs; do
    for path in "$base/$kind"/* "$base/$kind"/.incoming/*; do
        [ -e "$path" ] || continue
        name=${path#"$base/$kind/"}
        case $name in
            *.build-lock) state=lock ;;
            .incoming/*|*.stage|*.build.log|*.unpacking.*) state=partial ;;
            *) if [ -e "$path/.complete" ] || [ -e "$path/.ready" ]; then state=ready; else state=partial; fi ;;
        esac
        # An entry that vanished meanwhile (an upload finishing) is left out.
        used=$(stat -c %Y -- "$path/.last-used" 2>/dev/null || stat -c %Y -- "$path" 2>/dev/null) || continue
        size=$(du -sk -- "$path" 2>/dev/null | cut -f1)
        printf '%s %s %s %s %s\n' "$kind" "$name" "$state" "$used" "${size:-0}"
    done
done

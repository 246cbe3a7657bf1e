# Lists what runs shipped under a base folder. $1 the base folder. Prints one line per entry:
# "<kind> <name> <state> <last used, seconds since the epoch> <size in KiB>", kind "code" or
# "envs"; state "ready", or "partial" (an upload or build in progress, or one that died).
for kind in code envs; do
    for path in "$1/$kind"/* "$1/$kind"/.incoming/*; do
        [ -e "$path" ] || continue
        name=${path#"$1/$kind/"}
        case $name in
            *.build-lock|*.build.log|*.unpacking.*) state=partial ;;
            .incoming/*|*.stage) state=partial ;;
            *) if [ -e "$path/.complete" ] || [ -e "$path/.ready" ]; then state=ready; else state=partial; fi ;;
        esac
        used=$(stat -c %Y -- "$path/.last-used" 2>/dev/null || stat -c %Y -- "$path")
        printf '%s %s %s %s %s\n' "$kind" "$name" "$state" "$used" "$(du -sk -- "$path" 2>/dev/null | cut -f1)"
    done
done

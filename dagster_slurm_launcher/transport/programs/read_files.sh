# Reads parts of many files. No arguments.
# stdin: "<offset>\0<limit>\0<path>\0" per file; limit 0: to the end, else at most the last
# <limit> bytes from <offset> on.
# stdout: per file, in order, "<index> <start> <count>\n" and <count> bytes, or "<index> -\n" if
# it could not be opened or read (read again next time). Exit 1 if nothing can be copied to
# the temporary file (a full /tmp), so that a failed read never passes for "no new data".
t=$(mktemp) || exit 1
exec 4>&2  # the loop's stderr is silenced (files not there yet); its real errors go here
trap 'rm -f "$t"' EXIT
trap 'exit 1' HUP INT PIPE TERM
i=0
while IFS= read -r -d '' offset && IFS= read -r -d '' limit && IFS= read -r -d '' path; do
    if exec 3<"$path"; then
        start=$offset
        if [ "$limit" -gt 0 ]; then
            size=$(stat -L -c %s /dev/fd/3)
            [ $((size - limit)) -gt "$offset" ] && start=$((size - limit))
        fi
        if ! tail -c +$((start + 1)) <&3 >"$t"; then
            exec 3<&-
            # A full temporary directory fails the whole read, rather than pass for "no new
            # data"; a journal that could not be read (ESTALE or EIO on NFS) is read next time.
            if ! printf x >"$t"; then
                echo "could not copy $path into $t (is ${TMPDIR:-/tmp} on the login node full?)" >&4
                exit 1
            fi
            printf '%s -\n' "$i"
            i=$((i + 1))
            continue
        fi
        exec 3<&-
        printf '%s %s %s\n' "$i" "$start" "$(stat -c %s "$t")"
        cat "$t"
    else
        printf '%s -\n' "$i"
    fi
    i=$((i + 1))
done 2>/dev/null

# Removes lineage folders that nothing changed since a time. $1 the folder that holds them (the
# run folders' base's runs/), $2 that time (seconds since the epoch); stdin: the folders, each
# followed by NUL. stdout: "removed <folder>" or "changed <folder>" (something in it, or in a
# run folder in it, is newer than $2: a run started since the caller looked; kept) per folder.
# A path that is not a direct child of $1 is refused (exit 1, nothing of it removed), so that no
# input can make it remove anything else.
runs=${1%/} since=$2
status=0
while IFS= read -r -d '' folder; do
    case "$folder" in
        "$runs"/*/*|"$runs"/.|"$runs"/..|"$runs"/) echo "refused: $folder" >&2; status=1; continue ;;
        "$runs"/*) ;;
        *) echo "refused: $folder" >&2; status=1; continue ;;
    esac
    if [ -n "$(find "$folder" -maxdepth 2 -newermt "@$since" -print -quit 2>/dev/null)" ]; then
        printf 'changed %s\n' "$folder"
    else
        rm -rf -- "$folder" && printf 'removed %s\n' "$folder"
    fi
done
exit $status

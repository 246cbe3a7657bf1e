# Removes lineage folders. $1 the folder that holds them (the run folders' base's runs/);
# stdin: the folders, each followed by NUL. A path that is not a direct child of $1 is refused
# (exit 1, nothing of it removed), so that no input can make it remove anything else.
runs=${1%/}
status=0
while IFS= read -r -d '' folder; do
    case "$folder" in
        "$runs"/*/*|"$runs"/.|"$runs"/..|"$runs"/) echo "refused: $folder" >&2; status=1; continue ;;
        "$runs"/*) rm -rf -- "$folder" ;;
        *) echo "refused: $folder" >&2; status=1 ;;
    esac
done
exit $status

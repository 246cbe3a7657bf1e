# Appends stdin to a partial upload. $1 the partial file, $2 the offset the sender believes the
# file has. If the file has that size, appends stdin and prints the new size; otherwise reads
# stdin to its end, prints the size the file has, and exits 3 (the sender resumes from there).
umask 077
part=$1 offset=$2
mkdir -p -- "${part%/*}" || exit 1
size=$(stat -c %s -- "$part" 2>/dev/null || echo 0)
if [ "$size" != "$offset" ]; then cat >/dev/null; echo "$size"; exit 3; fi
cat >>"$part" || exit 1
stat -c %s -- "$part"

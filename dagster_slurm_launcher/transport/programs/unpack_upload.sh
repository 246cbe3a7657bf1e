# Unpacks a finished upload under its final name, atomically. $1 the partial file (a tar), $2 the
# final folder, $3 the tar's sha256. The tar is checked and unpacked into a temporary folder
# beside $2, which is then renamed: no reader ever sees a partial $2. If $2 appeared meanwhile
# (another run shipped the same content), it is kept. Prints "unpacked" or "present".
part=$1 final=$2 sha=$3
tmp=$final.unpacking.$(hostname).$$
trap 'rm -rf -- "$tmp" "$part"' EXIT
# Present already: touched, as in use (`shipped prune` judges build inputs by it).
if [ -e "$final/.complete" ]; then touch -- "$final"; echo present; exit 0; fi
actual=$(sha256sum -- "$part" | cut -d' ' -f1) || exit 1
[ "$actual" = "$sha" ] || { echo "the upload's checksum is $actual, not $sha: it was damaged on the way" >&2; exit 1; }
mkdir -p -- "${final%/*}" && mkdir -m 0700 -- "$tmp" && tar -xf "$part" -C "$tmp" --no-same-owner || exit 1
: >"$tmp/.complete"
chmod 0700 -- "$tmp"
if mv -T -- "$tmp" "$final" 2>/dev/null; then echo unpacked; exit 0; fi
# A folder without .complete under the final name is an older release's or a crash's: replace it.
if [ -e "$final/.complete" ]; then echo present; exit 0; fi
mv -T -- "$final" "$tmp.old" && mv -T -- "$tmp" "$final" && rm -rf -- "$tmp.old" && echo unpacked

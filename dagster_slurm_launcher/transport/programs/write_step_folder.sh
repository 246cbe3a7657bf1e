# $1 the step folder, then three pairs (byte count, file name) of files whose contents follow
# each other on stdin, then the journal's name. The files the relay reads are created empty before the job
# exists, so that a login node whose shared filesystem caches lookups (NFS, negative entries
# for up to acdirmax) never caches them as missing. `dd ... count_bytes` reads exactly that
# many bytes from the pipe (head -c may read ahead and lose the rest).
# Output: none; exit status non-zero with the reason on stderr.
umask 077
mkdir -p -- "$1" && cd -- "$1" || exit 1
take() { dd bs=65536 count="$1" iflag=count_bytes,fullblock status=none >"$2.tmp" && mv -f -- "$2.tmp" "$2"; }
take "$2" "$3" && take "$4" "$5" && take "$6" "$7" && : >>"$8" && : >>stdout && : >>stderr

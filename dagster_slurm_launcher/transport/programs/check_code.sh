# Loads a shipped code location's job with the shipped environment, on the login node, before a
# run's first step: a missing dependency or an import error fails the run there, not in every
# step. $1 the environment's interpreter, $2 the shipped code folder, $3 the marker to create
# when the job loaded, $4 the byte count of the setup lines that start stdin; the rest of stdin
# is the check's JSON (see dagster_slurm_launcher.ship.check). Prints the loader's error on failure.
readonly python=$1 code=$2 marker=$3 setup_bytes=$4
# bash -l's start-up files, in its order; what they print, or read from stdin, is not ours.
{ [ -r /etc/profile ] && . /etc/profile
  for f in "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile"; do [ -r "$f" ] && { . "$f"; break; }; done
} </dev/null >/dev/null 2>&1
setup=$(dd bs=65536 count="$setup_bytes" iflag=count_bytes,fullblock status=none)
out=$(mktemp) || exit 1
eval "$setup" </dev/null >"$out" 2>&1 || {
    printf "the executor's setup lines failed on the login node:\n%s\n" "$(tail -n 20 -- "$out")" >&2; rm -f -- "$out"; exit 1; }
rm -f -- "$out"
cd -- "$code" || exit 1
"$python" -m dagster_slurm_launcher.ship.check && : >"$marker"

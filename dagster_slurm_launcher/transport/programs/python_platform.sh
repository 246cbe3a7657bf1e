# The platform of the cluster's base interpreter, for downloading wheels it can install.
# $1 the interpreter; stdin: the executor's setup lines, run first in the cluster user's login
# environment, as a step's batch script runs them. Prints "<major><minor> <machine> <glibc
# version, or -> ", e.g. "311 x86_64 2.36".
readonly python=$1
# bash -l's start-up files, in its order; what they print, or read from stdin, is not ours.
{ [ -r /etc/profile ] && . /etc/profile
  for f in "$HOME/.bash_profile" "$HOME/.bash_login" "$HOME/.profile"; do [ -r "$f" ] && { . "$f"; break; }; done
} </dev/null >/dev/null 2>&1
setup=$(cat)
out=$(mktemp) || exit 1
eval "$setup" </dev/null >"$out" 2>&1 || {
    printf "the executor's setup lines failed on the login node:\n%s\n" "$(tail -n 20 -- "$out")" >&2; rm -f -- "$out"; exit 1; }
rm -f -- "$out"
exec "$python" -c '
import platform, sys
libc = platform.libc_ver()
print(f"{sys.version_info[0]}{sys.version_info[1]}", platform.machine(), libc[1] if libc[0] == "glibc" else "-")
'

# The platform of the cluster's base interpreter, for downloading wheels it can install.
# $1 the interpreter; stdin: the executor's setup lines, run first in the cluster user's login
# environment, as a step's batch script runs them. Prints "<major><minor> <machine> <glibc
# version, or -> ", e.g. "311 x86_64 2.36".
{ [ -r /etc/profile ] && . /etc/profile; [ -r "$HOME/.bash_profile" ] && . "$HOME/.bash_profile"; } >/dev/null 2>&1
setup=$(cat)
eval "$setup" >/dev/null 2>&1 || { echo "the executor's setup lines failed on the login node" >&2; exit 1; }
exec "$1" -c '
import platform, sys
libc = platform.libc_ver()
print(f"{sys.version_info[0]}{sys.version_info[1]}", platform.machine(), libc[1] if libc[0] == "glibc" else "-")
'

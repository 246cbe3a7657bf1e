# Removes a run's folder, then its lineage's folder once no run of the lineage has a folder
# left in it, only the submission claims. $1 the run's folder, $2 the lineage's folder, $3 the
# name of the claims folder in it. Output: none. Best effort: a folder left behind loses nothing.
rm -rf -- "$1"
ls -A -- "$2" | grep -qvx -- "$3" || rm -rf -- "$2"

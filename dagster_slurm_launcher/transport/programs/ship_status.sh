# What of a run's shipment is on the cluster already. $1 the code folder, $2 the environment
# folder, $3 the marker of their import check (each empty when not shipped). Prints "code",
# "environment" and "checked" lines, each "yes" or "no", and marks what it found as used now
# (`dagster-slurm shipped prune` keeps what was used recently).
code=$1 env=$2 checked=$3
say() { if [ -z "$2" ]; then echo "$1 yes"; elif [ -e "$2" ]; then echo "$1 yes"; : >"$3/.last-used" 2>/dev/null; else echo "$1 no"; fi; }
say code "${code:+$code/.complete}" "$code"
say environment "${env:+$env/.ready}" "$env"
if [ -z "$checked" ] || [ -e "$checked" ]; then echo "checked yes"; else echo "checked no"; fi

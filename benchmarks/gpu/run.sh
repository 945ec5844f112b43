#!/usr/bin/env bash
# The GPU evidence study, offline: installs the kit's wheels (this checkout's own wheel
# included, built by prepare.sh: nothing is built here) into a temporary folder, checks
# that the interpreter has everything (preflight, seconds), measures the step speed, runs a
# short smoke study (the whole path, and the throughput with the planned parallel jobs),
# fits the design into the time budget, runs the study.
#   usage: run.sh KIT OUT [--tiny] [--epochs N] [--class-orders K] [--jobs J] [--variants V ...]
#   KIT: made by prepare.sh. OUT: receives results.json, groups.png and evidence.log.
#   --tiny: a CPU smoke run of the same path (1 epoch, 2 steps), no GPU needed.
#   --epochs/--class-orders: replay a design instead of planning one.
#   --variants: the study's variants (selfdamage longtail --variants), e.g. simclr sdclr
#   sdclr+bcl; the balanced reference is added. Default: SimCLR vs SDCLR vs balanced.
set -euo pipefail
start=$(date +%s)
budget_s=${SELFDAMAGE_GPU_BUDGET_S:-540}  # the whole script, install included: 9 minutes
die() { echo "run.sh: error: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: run.sh KIT OUT [--tiny] [--epochs N] [--class-orders K] [--jobs J] [--variants V ...]"
kit=$1
out=$2
shift 2
tiny=0
for arg in "$@"; do [ "$arg" = --tiny ] && tiny=1; done

[ -d "$kit" ] || die "kit folder '$kit' does not exist; make it with benchmarks/gpu/prepare.sh $kit on a machine with the package registries"
kit=$(cd "$kit" && pwd)
for wheel in lightly torch_pruning selfdamage; do
  compgen -G "$kit/wheels/$wheel-*.whl" >/dev/null \
    || die "no $wheel wheel in $kit/wheels; rerun benchmarks/gpu/prepare.sh $kit"
done
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$kit/fashion-mnist/$name.gz" ] \
    || die "data file $kit/fashion-mnist/$name.gz is missing; rerun benchmarks/gpu/prepare.sh $kit"
done

# The kit's selfdamage wheel must be this checkout's commit (evidence.py comes from here).
repo=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$kit/selfdamage.commit" ] || die "$kit/selfdamage.commit is missing; rerun benchmarks/gpu/prepare.sh $kit"
read -r kit_commit kit_dirty <"$kit/selfdamage.commit" || true
here=$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)
if [ -z "$here" ] || [ "$kit_commit" = unknown ]; then
  echo "run.sh: warning: cannot check that this checkout (${here:-no git}) is the kit wheel's commit ($kit_commit)" >&2
elif [ "$here" != "$kit_commit" ]; then
  die "the kit's selfdamage wheel is commit $kit_commit but this checkout is $here; rerun benchmarks/gpu/prepare.sh $kit here"
fi
[ -z "${kit_dirty:-}" ] || echo "run.sh: warning: the kit's wheel was built with uncommitted changes on top of $kit_commit" >&2

python=${PYTHON:-python3}
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/selfdamage-gpu.XXXXXX")
echo "run.sh: checkpoints and per-run files in $scratch"

# Offline, wheels only: no index, no find-links, no configuration that could name one, no
# source distribution (so no build backend: the interpreter needs neither setuptools nor wheel).
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$python" -m pip install -q --no-index --no-deps --only-binary :all: --target "$scratch/site" \
  "$kit"/wheels/*.whl || die "offline install of the kit's wheels failed (see above)"
export PYTHONPATH="$scratch/site${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
# The installed copy is no git checkout: the provenance names the wheel's commit.
SELFDAMAGE_GIT_COMMIT=$kit_commit${kit_dirty:+-$kit_dirty}
export SELFDAMAGE_GIT_COMMIT

preflight=(--site "$scratch/site" --json "$scratch/preflight.json")
[ "$tiny" = 0 ] || preflight+=(--tiny)
if ! "$python" "$repo/benchmarks/gpu/preflight.py" "${preflight[@]}" >"$scratch/preflight.log" 2>&1; then
  tee "$out/evidence.log" <"$scratch/preflight.log" >&2
  exit 2
fi
tee "$out/evidence.log" <"$scratch/preflight.log"

set +e
"$python" "$repo/benchmarks/gpu/evidence.py" --data-dir "$kit/fashion-mnist" --out "$out" \
  --scratch "$scratch" --preflight "$scratch/preflight.json" --deadline $((start + budget_s)) \
  "$@" 2>&1 | tee -a "$out/evidence.log"
status=${PIPESTATUS[0]}
set -e
echo "run.sh: finished in $(($(date +%s) - start)) s with status $status; results in $out"
exit "$status"

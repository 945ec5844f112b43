#!/usr/bin/env bash
# The GPU evidence study, offline: installs this checkout and the kit's wheels into a
# temporary folder, runs a short smoke study (the whole path, and the throughput with the
# planned parallel jobs), fits the design into the time budget, runs the study.
#   usage: run.sh KIT OUT [--tiny] [--epochs N] [--class-orders K] [--jobs J]
#   KIT: made by prepare.sh. OUT: receives results.json, groups.png and evidence.log.
#   --tiny: a CPU smoke run of the same path (1 epoch, 2 steps), no GPU needed.
#   --epochs/--class-orders: replay a design instead of planning one.
set -euo pipefail
start=$(date +%s)
budget_s=${SELFDAMAGE_GPU_BUDGET_S:-540}  # the whole script, install included: 9 minutes
die() { echo "run.sh: error: $*" >&2; exit 2; }

[ $# -ge 2 ] || die "usage: run.sh KIT OUT [--tiny] [--epochs N] [--class-orders K] [--jobs J]"
kit=$1
out=$2
shift 2
tiny=0
for arg in "$@"; do [ "$arg" = --tiny ] && tiny=1; done

[ -d "$kit" ] || die "kit folder '$kit' does not exist; make it with benchmarks/gpu/prepare.sh $kit on a machine with the package registries"
kit=$(cd "$kit" && pwd)
for wheel in lightly torch_pruning; do
  compgen -G "$kit/wheels/$wheel-*.whl" >/dev/null \
    || die "no $wheel wheel in $kit/wheels; rerun benchmarks/gpu/prepare.sh $kit"
done
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$kit/fashion-mnist/$name.gz" ] \
    || die "data file $kit/fashion-mnist/$name.gz is missing; rerun benchmarks/gpu/prepare.sh $kit"
done
python=${PYTHON:-python3}
if [ "$tiny" = 0 ]; then
  "$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || die "no CUDA GPU visible to torch (nvidia-smi: $(nvidia-smi -L 2>&1 | head -1)); use --tiny for a CPU smoke run"
fi

repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/selfdamage-gpu.XXXXXX")
echo "run.sh: checkpoints and per-run files in $scratch"

# Offline: no index, no find-links, no configuration that could name one.
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"$python" -m pip install -q --no-index --no-deps --no-build-isolation --target "$scratch/site" \
  "$kit"/wheels/*.whl "$repo" || die "offline install failed (see above)"
rm -rf "$repo/build"
export PYTHONPATH="$scratch/site${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
# The installed copy is no git checkout: record this one's commit (empty: none, null in JSON).
SELFDAMAGE_GIT_COMMIT=$(git -C "$repo" rev-parse HEAD 2>/dev/null || true)
export SELFDAMAGE_GIT_COMMIT

set +e
"$python" "$repo/benchmarks/gpu/evidence.py" --data-dir "$kit/fashion-mnist" --out "$out" \
  --scratch "$scratch" --deadline $((start + budget_s)) "$@" 2>&1 | tee "$out/evidence.log"
status=${PIPESTATUS[0]}
set -e
echo "run.sh: finished in $(($(date +%s) - start)) s with status $status; results in $out"
exit "$status"

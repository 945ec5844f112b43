#!/usr/bin/env bash
# Prepares the GPU evidence kit in DIR, on a machine that can reach the package registries:
#   DIR/wheels/          the wheels the GPU image lacks (lightly, torch-pruning; pure Python)
#                        and this checkout's own wheel (built here: nothing is built there)
#   DIR/selfdamage.commit the commit that wheel was built from (run.sh checks it)
#   DIR/fashion-mnist/   the four Fashion-MNIST files
# Then, on the GPU machine (offline): benchmarks/gpu/run.sh DIR OUT
# See benchmarks/gpu/README.md for what the GPU image is assumed to have.
set -euo pipefail
usage="usage: prepare.sh DIR [FASHION_MNIST_DIR]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
dir=$1
data=${2:-/usr/share/datasets/fashion-mnist}
python=${PYTHON:-python3}

# Pinned to the versions of the development environment (pip show lightly torch-pruning).
# lightly is installed without its dependencies: it imports hydra-core / omegaconf (and
# antlr4, a source-only archive) only for its own command line, which selfdamage never uses.
wheels=(lightly==1.6.0 torch-pruning==1.6.1)

repo=$(cd "$(dirname "$0")/../.." && pwd)
commit=$(git -C "$repo" rev-parse HEAD 2>/dev/null) || {
  commit=unknown
  echo "prepare.sh: warning: $repo is no git checkout: the kit cannot record its commit" >&2
}

mkdir -p "$dir/wheels" "$dir/fashion-mnist"
rm -f "$dir"/wheels/selfdamage-*.whl
"$python" -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir/wheels" "${wheels[@]}"

# This checkout's wheel, built from a copy of its files (tracked and untracked, not ignored)
# so that no build/ or egg-info lands in the checkout; build isolation fetches the
# setuptools that pyproject.toml asks for.
stage=$(mktemp -d "${TMPDIR:-/tmp}/selfdamage-wheel.XXXXXX")
trap 'rm -rf "$stage"' EXIT
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$stage"
"$python" -m pip wheel -q --no-deps -w "$dir/wheels" "$stage"
dirty=$(git -C "$repo" status --porcelain -- selfdamage pyproject.toml 2>/dev/null || true)
if [ -n "$dirty" ]; then
  echo "prepare.sh: warning: the wheel holds uncommitted changes to selfdamage/ or pyproject.toml;" \
    "commit them and rerun prepare.sh so that results name the code they ran" >&2
  echo "$commit dirty" >"$dir/selfdamage.commit"
else
  echo "$commit" >"$dir/selfdamage.commit"
fi

for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ ! -f "$data/$name.gz" ]; then
    echo "prepare.sh: error: $data/$name.gz is missing (apt-get install dataset-fashion-mnist," \
      "or pass the folder holding the four .gz files as the second argument)" >&2
    exit 2
  fi
  cp "$data/$name.gz" "$dir/fashion-mnist/"
done

size=$(du -sm "$dir" | cut -f1)
if [ "$size" -ge 64 ]; then
  echo "prepare.sh: error: $dir is ${size} MiB, over the kit's 64 MiB limit" >&2
  exit 1
fi
echo "prepare.sh: kit ready in $dir (${size} MiB), selfdamage from commit $(cat "$dir/selfdamage.commit"):"
ls -1 "$dir/wheels" "$dir/fashion-mnist"

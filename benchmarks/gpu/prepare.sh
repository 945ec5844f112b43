#!/usr/bin/env bash
# Prepares the GPU evidence kit in DIR, on a machine that can reach the package registries:
#   DIR/wheels/        the wheels the GPU image lacks (lightly, torch-pruning; pure Python)
#   DIR/fashion-mnist/ the four Fashion-MNIST files
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

mkdir -p "$dir/wheels" "$dir/fashion-mnist"
"$python" -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir/wheels" "${wheels[@]}"

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
echo "prepare.sh: kit ready in $dir (${size} MiB):"
ls -1 "$dir/wheels" "$dir/fashion-mnist"

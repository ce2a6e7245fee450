#!/usr/bin/env bash
# Set up vitlab on a fresh machine: a virtual environment in .venv with vitlab (editable) and its
# dev extras, the pinned torch build, and the bundled Fashion-MNIST data (Debian package, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q -c tools/constraints.txt "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -c tools/constraints.txt -e ".[dev]"
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "note: Fashion-MNIST is not installed; as root run: apt-get install -y dataset-fashion-mnist" >&2
    fi
fi
echo "vitlab is set up in $(pwd)/.venv"

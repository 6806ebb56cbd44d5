#!/bin/bash
# bench/fetch_wheels.sh DEST — downloads, on a machine with PyPI, every wheel tuneforge needs on the
# lent GPU machine beyond what its 'cuda' image already has (Python 3.12; the device's KINDS.md
# lists the image: torch 2.11, transformers 5.17, tokenizers 0.23.2, accelerate 1.15,
# huggingface-hub 1.33, typer, rich, matplotlib, pyyaml, safetensors, pandas, pyarrow, xxhash,
# psutil, jinja2 are there). Carry DEST (e.g. .whl-tf) with the device call; bench/device.sh
# installs it with `pip install --no-index --no-deps --target /tmp/tf-site DEST/*.whl`.
# tuneforge itself is not a wheel: the driver imports it from the carried working tree's src/.
#
# Missing from the image (pyproject dependencies): trl, datasets (+ dill, multiprocess), pydantic
# (+ pydantic-core, annotated-types, typing-inspection, and typing-extensions>=4.16 it needs).
# Pinned to the versions tuneforge's own test venv runs: peft (the image's version is not
# recorded; tuneforge needs >=0.18) and fsspec (datasets 5.2 wants <=2026.9.0).
# liger-kernel for the enable_liger_kernel rows.
#
# BENCH_NATIVE=1 downloads the same versions for THIS machine's Python instead (CPU smoke runs).
set -e
dest=${1:-.whl-tf}
py=${PYTHON:-python3}
pkgs="trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fsspec==2026.9.0
      peft==0.21.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
      typing-inspection==0.4.5 typing-extensions==4.16.0 liger-kernel==0.8.5"
target=(--python-version 3.12 --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
[ "${BENCH_NATIVE:-0}" = 1 ] && target=()
mkdir -p "$dest"
# shellcheck disable=SC2086
"$py" -m pip download -q --no-deps --only-binary=:all: "${target[@]}" -d "$dest" $pkgs
ls -l "$dest"
du -sh "$dest"

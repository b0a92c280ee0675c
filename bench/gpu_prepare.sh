#!/usr/bin/env bash
# Prepares, on a machine with network (PyPI, npm, Debian), everything bench/gpu_run.sh needs on a GPU machine
# without network, in ignored folders of the checkout ROOT (default: this checkout):
#   .whl/         Playwright, greenlet, brotli wheels for the GPU machine's python3 (3.12)
#   .gl/          glvnd + Vulkan loader debs (libGLdispatch.so.0: NVIDIA's Vulkan driver needs it)
#   .gpu/debs/    NSS/NSPR debs (the pinned headless shell needs them; minimal Ubuntu lacks them)
#   .gpu/part-*   the pinned Chromium and onnxruntime-web from the plugin's cache, tar.xz in pieces of 55 MiB
#   .gpu/models/  the model set of bench_gpu.py (built here; real models from PyPI wheels)
#   .gpu/src/     this project's files (git ls-files)
# Each path stays under the device tool's 64 MiB a call; see bench/gpu_run.sh for the order of the calls.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:-$HERE}
cd "$ROOT"
mkdir -p .whl .gl .gpu/debs .gpu/wheels-models
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl playwright==1.65.2 greenlet==3.5.6 brotli==1.2.1
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
apt-get $o update -qq
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
(cd .gpu/debs && apt-get $o download libnss3 libnspr4 && for f in *%3a*; do [ -e "$f" ] && mv "$f" "${f//%3a/_}"; done || true)
# the plugin's cache: pinned Chromium + onnxruntime-web (fetched by `browserml install` if missing)
PYTHONPATH="$HERE" python3 -m pytest_browserml.cli install >/dev/null
CACHE=$(PYTHONPATH="$HERE" python3 -c 'from pytest_browserml.browser import provision; print(provision.cache_dir())')
rm -f .gpu/part-*
tar --format=posix -C "$(dirname "$CACHE")" -cf - "$(basename "$CACHE")" | xz -6 -T0 | split -b 55M - .gpu/part-
python3 -m pip download -q --no-deps -d .gpu/wheels-models rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3
PYTHONPATH="$HERE" python3 "$HERE/bench/bench_gpu.py" prepare .gpu/models --wheels .gpu/wheels-models
rm -rf .gpu/src && mkdir -p .gpu/src
(cd "$HERE" && git ls-files -co --exclude-standard -z | grep -zv '^\.gpu/' | xargs -0 cp --parents -t "$ROOT/.gpu/src")
du -sh .whl .gl .gpu/debs .gpu/part-* .gpu/models .gpu/src

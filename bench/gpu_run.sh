#!/usr/bin/env bash
# Runs the proof on a GPU machine without network, from what bench/gpu_prepare.sh made. The device tool sends
# at most 64 MiB of carried paths a call and keeps a machine only 30 s between calls, so the payloads travel
# in back-to-back calls, each stashing what it carried under /tmp/gpu:
#   bash .gpu/src/bench/gpu_run.sh stash    carry .gpu/src plus some of .whl .gl .gpu/debs .gpu/part-* .gpu/models
#   bash .gpu/src/bench/gpu_run.sh bench    (last call) install, doctor, the example suite, the model set
#   bash .gpu/src/bench/gpu_run.sh xdist "ARGS" ["ARGS" ...]   (last call) bench/bench_xdist.py ARGS, once each
#   bash .gpu/src/bench/gpu_run.sh ab "ARGS" [ROUNDS]   (last call) bench_xdist.py ARGS on the code in .gpu/src-old
#       (carried with .gpu/src: git archive <commit> pytest_browserml | tar -x -C .gpu/src-old) and on .gpu/src,
#       interleaved, ROUNDS (2) times: the machine's speed moves between leases, so compare only within one call
# Measured: three calls (.whl .gl .gpu/debs | .gpu/part-aa | .gpu/part-ab .gpu/models), 3.2 min of device time
# in all with the bench on both adapters (ADAPTERS=hardware: about 70 s for the last call).
# Results go to $OUT (or ./gpu-out): doctor.txt, examples.txt, examples.json, bench.txt, bench.json.
set -uo pipefail
STASH=/tmp/gpu
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$STASH" "$OUT"

stash() {
  for path in .whl .gl .gpu/debs .gpu/models .gpu/src .gpu/src-old; do
    [ -e "$path" ] && rm -rf "$STASH/$(basename "$path")" && cp -r "$path" "$STASH/$(basename "$path")"
  done
  for part in .gpu/part-*; do [ -e "$part" ] && cp "$part" "$STASH/"; done
  ls "$STASH"; du -sh "$STASH"
}

install() {
  for deb in "$STASH"/.gl/*.deb; do dpkg -x "$deb" /; done  # glvnd's libGLdispatch for NVIDIA's Vulkan driver
  ldconfig
  mkdir -p /tmp/nss && for deb in "$STASH"/debs/*.deb; do dpkg -x "$deb" /tmp/nss; done
  export LD_LIBRARY_PATH=/tmp/nss/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  python3 -m pip install -q --no-index --no-deps --no-cache-dir --upgrade --target /tmp/site \
    "$STASH"/.whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
  unxz() { if command -v xz >/dev/null; then xz -d; else python3 -c \
    'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)'; fi; }
  mkdir -p /tmp/cache && cat "$STASH"/part-* | unxz | tar -C /tmp/cache -xf - || exit 1
  export BROWSERML_CACHE=/tmp/cache/$(ls /tmp/cache)
  # installed, not imported from a folder: the JSON report reads the package's metadata
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e "$STASH/src" || exit 1
  # bytecode, as a user's pip install leaves it: with PYTHONDONTWRITEBYTECODE set, every process (each xdist
  # worker) would compile Playwright and the plugin from source again
  python3 -m compileall -q -j 0 /tmp/site "$STASH/src/pytest_browserml" >/dev/null
  [ -d "$STASH/src-old" ] && python3 -m compileall -q -j 0 "$STASH/src-old" >/dev/null
}

bench() {
  install
  cd "$STASH/src" || exit 1
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  timeout 90 python3 -m pytest_browserml.cli doctor 2>&1 | tee "$OUT/doctor.txt"
  timeout 150 python3 -m pytest examples -p no:cacheprovider --webgpu-adapter hardware -rA \
    --browser-ep wasm --browser-ep webgpu --browser-ep webgpu:jsep \
    --browserml-report "$OUT/examples.json" 2>&1 | tail -40 | tee "$OUT/examples.txt"
  PYTHONUNBUFFERED=1 timeout "${BENCH_TIMEOUT:-300}" python3 bench/bench_gpu.py run "$STASH/models" \
    --adapters ${ADAPTERS:-hardware swiftshader} --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
}

xdist() {  # the CPU side only: bench/bench_xdist.py with XDIST_ARGS (needs .whl, .gpu/debs, the parts)
  install
  cd "$STASH/src" || exit 1
  nproc; uptime
  for arguments in "${@:-}"; do
    PYTHONUNBUFFERED=1 python3 bench/bench_xdist.py $arguments 2>&1 | tee -a "$OUT/xdist.txt"
  done
}

ab() {  # bench_xdist.py "$1" on the old tree (first on PYTHONPATH, before the editable install) and on the new
  install
  cd "$STASH/src" || exit 1
  nproc; uptime
  for round in $(seq "${2:-2}"); do
    for tree in old new; do
      path=/tmp/site; [ "$tree" = old ] && path=$STASH/src-old:/tmp/site
      echo "[ab] round $round: $tree" | tee -a "$OUT/xdist.txt"
      PYTHONPATH=$path PYTHONUNBUFFERED=1 python3 bench/bench_xdist.py $1 2>&1 | tee -a "$OUT/xdist.txt"
    done
  done
}

"$@"

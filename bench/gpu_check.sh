#!/usr/bin/env bash
# Issue 8 on a lent GPU, in one `device` run (about 6 minutes on an H100/H200).
#
# The device machine has PyTorch, h5py, safetensors, scipy, tqdm and pytest,
# but not astropy, and ../shared does not travel. Prepare here, once:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl \
#       astropy==8.0.2 pyerfa==2.0.1.5 astropy-iers-data==0.2026.11.2.0.34.55
#   mkdir -p .gpu-input
#   cp ../shared/data/hmi/fulldisk/hmi.M_720s.20160707_010000_TAI.magnetogram.fits .gpu-input/
#
# (.whl and .gpu-input are git-ignored; together ~27 MB.) Then call the device
# tool's run with command "bash bench/gpu_check.sh", carry [".whl", ".gpu-input"]
# and timeout_s 480. Everything it measures comes back under $OUT: the GPU
# tests' log, the tile x batch sweep (bench/tile_sweep.py) and one JSON + log
# per bench/throughput.py configuration.
#
# A dry run of the script's logic on the CPU: DEVICE=cpu SIZE=512 FRAMES=2 bash bench/gpu_check.sh
#
# hdf5plugin (Blosc2/zstd) is 46 MB and does not fit the 64 MiB transfer, so
# the cubes here are uncompressed or gzip; the CPU cost of the default
# blosc2-zstd codec is measured on the CPU by bench/cube_write.py.
set -uo pipefail
OUT=${OUT:-bench/out/gpu}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-4096}
FRAMES=${FRAMES:-8}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
IN=$(ls .gpu-input/*.fits ../shared/data/hmi/fulldisk/hmi.M_720s.*.fits 2>/dev/null | head -1)
[ -n "$IN" ] || { echo "no full-disk input: see the top of $0"; exit 1; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt" ||
    echo "no nvidia-smi" | tee "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"

echo "== GPU tests (tiling exactness in fp32 on the GPU, GPU vs CPU, bf16/fp16 error, batch,"
echo "   the projection in torch on the GPU against the numpy path)"
timeout 180 python3 -m pytest -q -p no:cacheprovider -rs --junitxml="$OUT/gpu-tests.xml" \
    tests/test_gpu.py tests/test_fuse.py 2>&1 | tail -15 | tee "$OUT/gpu-tests.log"

# Peak dense TFLOP/s of an H100/H200 SXM: bf16 989, fp32 (no tensor cores) 67.
echo "== tile x batch sweep of the network alone (bf16): the largest that fit, the fastest"
if [ "$DEVICE" = cpu ]; then SWEEP="--tiles 64 128 --batches 1 2"; else
    SWEEP="--tiles 512 1024 1536 2048 --batches 1 2 4 8"; fi
# shellcheck disable=SC2086
timeout 120 python3 bench/tile_sweep.py --device "$DEVICE" --precision bf16 $SWEEP \
    --peak-tflops 989 --json "$OUT/sweep-bf16.json" 2>&1 | tee "$OUT/sweep-bf16.log" | tail -20

bench() {
    local name=$1
    shift
    echo "== $name: $*"
    timeout 150 python3 bench/throughput.py --device "$DEVICE" --size "$SIZE" --input "$IN" \
        --frames "$FRAMES" \
        --tile 1024 --batch-size 4 --pipeline threaded --readers 3 --writers 10 \
        --cube-compression none --json "$OUT/$name.json" "$@" 2>&1 | tee "$OUT/$name.log" | tail -22
}
bench bf16 --precision bf16 --compression none --peak-tflops 989
bench fp32 --precision fp32 --compression none --peak-tflops 67
bench bf16-gzip --precision bf16 --compression gzip --writers 12 --peak-tflops 989
bench bf16-compiled --precision bf16 --compression none --compile --peak-tflops 989

echo "== the full-disk pipeline on the device: network, projection (torch on the GPU), quality,"
echo "   FITS and cube writes, stage by stage (bench/fulldisk.py; default settings, fp32)"
timeout 200 python3 bench/fulldisk.py --device "$DEVICE" --data "$(dirname "$IN")" \
    --frames "$(basename "$IN" | sed -E 's/hmi\.M_720s\.(.*)\.magnetogram\.fits/\1/')" \
    --cube-compression none --json "$OUT/fulldisk.json" 2>&1 | tee "$OUT/fulldisk.log" | tail -4
echo "== done"

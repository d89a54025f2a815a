#!/usr/bin/env bash
# The device checks of issue 18, as one script for a lent H200 (the `device` tool). The machine has torch but no
# gymnasium: gymnasium travels as wheels in .whl/, made here with
#     pip download -d .whl --no-deps gymnasium==1.4.0 farama-notifications
# and the tool's carry=[".whl"]. Each section has its own time limit (8 minutes in all, inside the 10-minute
# call limit, leaving room in the 15-minute budget for the machine's start); rows go to $OUT/gpu.jsonl.
# Sections 2-4 repeat the rows of docs/gpu.md's tables on the current code (the device rollout in ~62 ops
# a step instead of 123 since 020f731, and matmul_precision="auto" = TF32 since then: both unmeasured on a
# GPU; the figures in docs/gpu.md were full float32), with full-float32 ("ieee") rows beside for the
# difference; 4b splits one update into its phases.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
O=${OUT:-/tmp}/gpu.jsonl
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, gymnasium; print('torch', torch.__version__, 'gymnasium', gymnasium.__version__, torch.cuda.get_device_name())"
B="python3 benchmarks/gpu_throughput.py"
echo "== 1. graphed updates, the device rollout (normalisation, reset pool) and the torch envs, on the GPU"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/math/test_compiled.py tests/math/test_torch_envs.py "tests/contracts/test_device_loop.py::test_learn_computes_under_the_models_matmul_precision" 2>&1 | tail -4
echo "== 2. one agent, CUDA graphs without inductor (docs/gpu.md, ieee: 9.6M / 19.4M / 25.6-27.8M / 28.8M)"
LUCIDRL_TORCH_COMPILE=0 timeout 40 $B envs --device cuda --envs 262144 --compile 1 --matmul-precision ieee --target-steps 5e7 --max-updates 6 --out $O
LUCIDRL_TORCH_COMPILE=0 timeout 60 $B envs --device cuda --envs 4096 16384 65536 262144 524288 --compile 1 --target-steps 5e7 --max-updates 6 --out $O
echo "== 3. one agent, torch.compile + CUDA graphs (docs/gpu.md: 28.0M at 65,536, 32.5M at 262,144)"
timeout 110 $B envs --device cuda --envs 4096 262144 --compile 1 --target-steps 1e8 --max-updates 6 --out $O 2>&1 | grep -v -i "warn\|softmax\|^$\|important use"
echo "== 4. vmapped agents (docs/gpu.md: 14.2M at 2,048, 21.8M at 8,192)"
timeout 35 $B agents --device cuda --agents 2048 8192 --agent-updates 6 --out $O
echo "== 4b. one update's phases (rollout, GAE, update, after), CUDA graphs without inductor"
LUCIDRL_TORCH_COMPILE=0 timeout 55 python3 benchmarks/device/breakdown.py --device cuda --envs 4096 262144 --updates 4 --matmul-precision auto ieee | tee -a $O
echo "== 4c. the ops that take an eager iteration's GPU time (no graphs: every op a kernel of its own)"
timeout 35 python3 benchmarks/device/breakdown.py --device cuda --envs 262144 --updates 1 --compile 0 --profile 15
echo "== 5. time to solve from a cold process start (docs/gpu.md: 10.8 s)"
LUCIDRL_TORCH_COMPILE=0 timeout 40 $B solve --device cuda --compile 1 --eval-updates 1 --solve-timeout 18 --out $O
echo "== done"

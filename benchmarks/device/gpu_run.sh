#!/usr/bin/env bash
# The device checks of issue 18, as one script for a lent H200 (the `device` tool): gymnasium travels as wheels
# in .whl/ (the machine has torch but no gymnasium). Every section has its own time limit; rows go to $OUT/gpu.jsonl.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 RAY_AUTH_MODE=disabled
O=${OUT:-/tmp}/gpu.jsonl
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, gymnasium; print('torch', torch.__version__, 'gymnasium', gymnasium.__version__, torch.cuda.get_device_name())"
B="python3 benchmarks/gpu_throughput.py"
echo "== 1. compiled/graphed updates and the device rollout vs the reference, on the GPU"
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/math/test_compiled.py 2>&1 | tail -4
echo "== 2. one agent, eager"
timeout 90 $B envs --device cuda --envs 1024 4096 16384 65536 --compile 0 --target-steps 3e7 --max-updates 8 --out $O
echo "== 3. one agent, CUDA graphs (no inductor)"
LUCIDRL_TORCH_COMPILE=0 timeout 75 $B envs --device cuda --envs 1024 4096 16384 65536 --compile 1 --target-steps 5e7 --max-updates 12 --out $O
echo "== 4. one agent, torch.compile + CUDA graphs"
timeout 90 $B envs --device cuda --envs 65536 --compile 1 --target-steps 5e7 --max-updates 12 --out $O
echo "== 5. vmapped agents"
timeout 70 $B agents --device cuda --agents 1 64 512 2048 --agent-updates 4 --out $O
echo "== 6. time to solve from a cold process start"
timeout 50 $B solve --device cuda --compile 0 --solve-timeout 15 --out $O
LUCIDRL_TORCH_COMPILE=0 timeout 50 $B solve --device cuda --compile 1 --solve-timeout 15 --out $O
echo "== done"

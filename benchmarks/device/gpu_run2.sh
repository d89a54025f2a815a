#!/usr/bin/env bash
# Second device run of issue 18: env equivalence on the GPU, larger batches, torch.compile of the rollout step,
# vmapped agents under CUDA graphs, and the cold-start solve (fixed protocol). Rows go to $OUT/gpu2.jsonl.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
O=${OUT:-/tmp}/gpu2.jsonl
B="python3 benchmarks/gpu_throughput.py"
echo "== 1. torch envs: GPU vs CPU"
timeout 45 python3 benchmarks/device/torch_envs_check.py cuda 2>&1 | grep -v Warning | tail -12
echo "== 2. one agent, CUDA graphs (no inductor), large batches"
LUCIDRL_TORCH_COMPILE=0 timeout 60 $B envs --device cuda --envs 65536 131072 262144 --compile 1 --target-steps 1e8 --max-updates 6 --out $O
echo "== 3. one agent, torch.compile (loss and rollout step) + CUDA graphs"
timeout 100 $B envs --device cuda --envs 65536 262144 --compile 1 --target-steps 1e8 --max-updates 6 --out $O 2>&1 | grep -v -i "warn\|softmax\|^$\|important use"
echo "== 4. vmapped agents under CUDA graphs"
timeout 70 $B agents --device cuda --agents 64 512 2048 8192 --agent-updates 6 --out $O
echo "== 5. time to solve from a cold process start"
timeout 65 $B solve --device cuda --compile 0 --eval-updates 1 --solve-timeout 20 --out $O
LUCIDRL_TORCH_COMPILE=0 timeout 65 $B solve --device cuda --compile 1 --eval-updates 1 --solve-timeout 20 --out $O
echo "== done"

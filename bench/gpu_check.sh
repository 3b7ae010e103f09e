#!/usr/bin/env bash
# The GPU check: on one GPU, in under 8 minutes, downloading nothing.
#   1. the tests that only run on a GPU (fp16 mixed precision, 2:4 semi-structured sparsity, a Ray task on its GPU in bf16);
#   2. two runs of the `paper` preset's protocol at 224 px in bf16, on CIFAR10-layout files generated here
#      (MobileNetV2 from its ImageNet weights, pruned by weight; VGG16 from scratch, pruned by filter: its ImageNet weights would need a download);
#   3. the images per second of each, and what the whole `paper` preset (624 runs) would cost on one GPU and on N with `--executor ray`.
# --dry-run: the same steps on the CPU, tiny (3 classes, 32 px, fp32: mixed precision needs CUDA), to check the script itself.
# Usage: bench/gpu_check.sh [--dry-run] [--gpus N] [--workers W]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DRY=0 GPUS=8 WORKERS=8
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) DRY=1 ;;
    --gpus) GPUS=${2:?--gpus needs a number}; shift ;;
    --workers) WORKERS=${2:?--workers needs a number}; shift ;;
    *) echo "usage: bench/gpu_check.sh [--dry-run] [--gpus N] [--workers W]" >&2; exit 2 ;;
  esac
  shift
done
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || { echo "--gpus must be a whole number >= 1, got $GPUS" >&2; exit 2; }
[[ $WORKERS =~ ^[0-9]+$ ]] || { echo "--workers must be a whole number >= 0, got $WORKERS" >&2; exit 2; }
if [ $DRY = 0 ] && ! $PY -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  echo "no CUDA device here: run bench/gpu_check.sh --dry-run to check the script on a CPU" >&2; exit 1
fi
export TORCH_HOME=${TORCH_HOME:-$HOME/.cache/torch} HF_HUB_OFFLINE=1

echo "== 1. the GPU-only tests"
$PY -m pytest -q -p no:cacheprovider -rs -k 'cuda or gpu' tests/test_precision.py tests/test_deploy.py tests/test_ray.py

echo "== 2. two runs of the paper protocol"
DRY=$DRY GPUS=$GPUS WORKERS=$WORKERS $PY - <<'EOF'
import os, tempfile, time, warnings
from pathlib import Path
import pandas as pd, torch
from fastprune.study import presets, plan_study, check_study, train_run
from fastprune.data import get_dataset
warnings.filterwarnings('ignore', category=FutureWarning)
dry,gpus,workers = os.environ['DRY'] == '1',int(os.environ['GPUS']),int(os.environ['WORKERS'])
src = get_dataset('cifar10')
cifar10 = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck')
classes = cifar10[:3] if dry else cifar10
root = Path(tempfile.mkdtemp(prefix='gpu_check_'))
n_train,n_valid,size,epochs = (4, 2, 32, 1) if dry else (500, 100, 224, 2)  # per class
src.write_tiny(root, classes, n_train=n_train, n_valid=n_valid)
kw = dict(presets['paper'], datasets='cifar10', sparsities=90, seeds=0, epochs=epochs, size=size)
runs = [plan_study(**dict(kw, archs='mobilenet_v2', arms='pretrained', granularities='weight'))[0],
        plan_study(**dict(kw, archs='vgg16', arms='scratch', granularities='filter'))[0]]
check_study(runs, root)  # the MobileNetV2 weights are in the torch hub cache, or this stops here
precision = 'fp32' if dry else 'bf16'
ips = {}
for cfg in runs:
    r = train_run(cfg, root, bar=False, precision=precision, num_workers=0 if dry else workers)
    imgs = cfg['epochs']*(r['train_items'] + r['valid_items']/3)  # a validation image costs about a third of a training one
    ips[cfg['arch']] = imgs/r['time']
    print(f"{cfg['arch']:>12} {cfg['arm']:>10} {cfg['granularity']:>6} {cfg['sparsity']:g} %, {size} px, {precision}: {r['train_items']} + {r['valid_items']} images, "
          f"{cfg['epochs']} epoch(s), {r['time']:.1f} s, {ips[cfg['arch']]:,.0f} images/s (start-up included), accuracy {r['accuracy']:.1f} %, sparsity {r['measured_sparsity']:.1f} %")
# the paper preset: 30 epochs over each data set's official training set, validation each epoch (counted at a third)
n_tr = dict(cifar10=50_000, cifar100=50_000, svhn=73_257, caltech101=6_942)
n_va = dict(cifar10=10_000, cifar100=10_000, svhn=26_032, caltech101=1_735)
pp = pd.DataFrame(plan_study(**presets['paper']))
imgs = pp.assign(imgs=[r.epochs*(n_tr[r.dataset] + n_va[r.dataset]/3) for r in pp.itertuples()]).groupby('arch').imgs.sum()
hours = imgs/pd.Series(ips)/3600
print(f"== 3. the paper preset ({len(pp)} runs) at these rates{' (dry run: CPU rates at 32 px, meaningless for a GPU)' if dry else ''}")
for a,h in hours.items(): print(f'{a:>12}: {imgs[a]/1e6:,.0f} M image passes, {h:,.1f} GPU-hours')
print(f'{"in all":>12}: {hours.sum():,.1f} GPU-hours on one GPU ({hours.sum()/24:.1f} days); on {gpus} GPUs with --executor ray: {hours.sum()/gpus:,.1f} hours '
      f'({len(pp)} runs keep {gpus} GPUs busy, one run per GPU)')
EOF

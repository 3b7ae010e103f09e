"""What compaction buys on CPU: parameters, FLOPs, file size and measured inference latency, dense against compacted.

Prunes VGG16 (CIFAR-style head) and MobileNetV2 at 32 px to 50 % and 75 % filter sparsity with `Sparsifier`, compacts them with
`compact`, checks that the outputs are unchanged, and times dense and compacted inference (batch 1 and 64, in PyTorch's default
NCHW layout and in channels-last), alternating the two models run by run so that other load on the machine hits both alike. Prints markdown tables, ready to paste into the docs.

Run from the repository root, on one thread: `OMP_NUM_THREADS=1 python bench/compact.py` (about 5 minutes on a quiet 2-core CPU),
or `python bench/compact.py --quick` for a smoke test (under a minute)."""
from __future__ import annotations
import argparse, copy, io, os, platform, shlex, statistics, sys, time, warnings
import torch, torchvision
from torch import nn
from fastprune.all import *
from fastprune.compact import compact, compact_plan, file_size, save_sparse
from fastprune.report import module_flops

warnings.filterwarnings('ignore', category=FutureWarning)  # torchvision's `torch.jit.script` notice
SEED = 0

def vgg16_cifar(n_out=10):
    "torchvision VGG16's convolutions with a 32-px CIFAR-style head: global average pool and one Linear"
    return nn.Sequential(torchvision.models.vgg16(num_classes=n_out).features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, n_out))

def mobilenet_v2(n_out=10): return torchvision.models.mobilenet_v2(num_classes=n_out)

def trained_bn(model, seed=SEED):
    "BatchNorm statistics and affine parameters like a trained network's: a fresh one (mean 0, shift 0) would make more channels look dead than training leaves"
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t,lo,hi in [(m.running_mean,-1,1), (m.running_var,.5,2), (m.weight,.5,1.5), (m.bias,-.5,.5)]: t.copy_(torch.rand(t.shape, generator=g)*(hi-lo)+lo)
    return model

# name -> (factory, image size, compact's round_to)
archs = {
    'VGG16 (CIFAR head)': (vgg16_cifar, 32, None),
    'MobileNetV2': (mobilenet_v2, 32, None),
    'MobileNetV2, round_to=8': (mobilenet_v2, 32, 8),
}

def pruned(factory, sparsity:float, size:int, round_to=None):
    "(dense, masked, compacted) versions of one network at `sparsity` % of filters, every Conv2d pruned by magnitude"
    torch.manual_seed(SEED)
    dense = trained_bn(factory()).eval()
    masked = copy.deepcopy(dense)
    Sparsifier(masked, 'filter').prune(sparsity)
    x = torch.randn(2, 3, size, size)
    small = compact(masked, x, round_to=round_to).eval()  # checks the outputs against the masked model
    return dense, masked, small

def timeit(models:list, x:torch.Tensor, reps:int, warmup:int)->list:
    "Median wall time (s) of one forward pass of each model, runs alternated between the models"
    ts = [[] for _ in models]
    with torch.inference_mode():
        for _ in range(warmup):
            for m in models: m(x)
        for _ in range(reps):
            for m,t in zip(models, ts):
                s = time.perf_counter(); m(x); t.append(time.perf_counter() - s)
    return [statistics.median(t) for t in ts]

def n_params(m): return sum(p.numel() for p in m.parameters())
def mb(n): return f'{n/2**20:.1f}'
def cpu_name():
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor() or platform.machine()

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='few runs: a smoke test, not a measurement')
    args = p.parse_args(argv)
    reps1,reps64,warm = (5, 2, 1) if args.quick else (60, 12, 3)
    print(f'Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} thread{"s"*(torch.get_num_threads()>1)}), '
          f'torchvision {torchvision.__version__}, Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start')
    env = ' '.join(f'{k}={os.environ[k]}' for k in ('OMP_NUM_THREADS',) if k in os.environ)
    print(f'Command: `{(env + " ") if env else ""}python {" ".join(map(shlex.quote, ["bench/compact.py"] + sys.argv[1:]))}`\n')
    rows,t0 = [],time.time()
    layouts = dict(NCHW=torch.contiguous_format, channels_last=torch.channels_last)
    for name,(factory,size,round_to) in archs.items():
        for sp in (50, 75):
            dense,masked,small = pruned(factory, sp, size, round_to)
            x1 = torch.randn(1, 3, size, size)
            r = dict(model=f'{name}, {size} px', sp=sp, p0=n_params(dense), p1=n_params(small), f0=module_flops(dense, x1)[1], f1=module_flops(small, x1)[1],
                     s0=file_size(dense), s1=file_size(small), sm=save_sparse(masked, io.BytesIO()), lat={})
            for lay,fmt in layouts.items():
                ms = [m.to(memory_format=fmt) for m in (dense, small)]
                for bs,reps in ((1, reps1), (64, reps64)): r['lat'][lay, bs] = timeit(ms, torch.randn(bs, 3, size, size).to(memory_format=fmt), reps, warm)
            rows.append(r)
            print(f'  {name} {sp} %: done ({time.time()-t0:.0f} s)', file=sys.stderr)
    print('| model | filter sparsity | params dense → compacted | MFLOPs/image dense → compacted | FLOP ratio | file MB dense → compacted (masked model via `save_sparse`) |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['model']} | {r['sp']} % | {r['p0']/1e6:.2f} M → {r['p1']/1e6:.2f} M | {r['f0']/1e6:.1f} → {r['f1']/1e6:.1f} | {r['f0']/r['f1']:.2f}× "
              f"| {mb(r['s0'])} → {mb(r['s1'])} ({mb(r['sm'])}) |")
    print('\n| model | filter sparsity | memory layout | batch | ms dense → compacted | measured speed-up | FLOP ratio | speed-up / FLOP ratio |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        fr = r['f0']/r['f1']
        for (lay,bs),(d,c) in r['lat'].items():
            print(f"| {r['model']} | {r['sp']} % | {lay} | {bs} | {d*1e3:.2f} → {c*1e3:.2f} | {d/c:.2f}× | {fr:.2f}× | {d/c/fr:.2f} |")
    print(f'\nMedians of {reps1} (batch 1) and {reps64} (batch 64) runs after {warm} warm-up runs each, dense and compacted alternated run by run; '
          f'FLOPs from `torch.utils.flop_counter` for one image; load average {os.getloadavg()[0]:.2f} at the end; total {time.time()-t0:.0f} s.')

if __name__ == '__main__': main()

"""What compaction buys on CPU: parameters, FLOPs, file size and measured inference latency, dense against compacted.

Prunes VGG16 (CIFAR-style head), MobileNetV2, ResNet-18 and ResNeXt-26 (grouped convolutions) at 32 px to 50 % and 75 % filter sparsity with `Sparsifier`, compacts them with
`compact`, checks that the outputs are unchanged, and times dense and compacted inference (batch 1 and 64, in PyTorch's default
NCHW layout and in channels-last), alternating the two models run by run so that other load on the machine hits both alike. Prints markdown tables, ready to paste into the docs.

Run from the repository root, on one thread: `OMP_NUM_THREADS=1 python bench/compact.py` (about 8 minutes on a quiet 2-core CPU),
or `python bench/compact.py --quick` for a smoke test (under a minute).

`python bench/compact.py --train` measures training instead: VGG16 (CIFAR head) and MobileNetV2 on the digits at 32 px, pruned to 50 % of
their filters in the first half of a `fit_one_cycle`, masked only against shrunk while training (`CompactCallback`), from the same seed on
the same batches. It prints the time per epoch before and after the cut, the whole fit and the final accuracy of both (about 10 minutes)."""
from __future__ import annotations
import argparse, copy, io, os, platform, shlex, statistics, sys, time, warnings
import torch, torchvision, timm
from torch import nn
from fastprune.all import *
from fastprune.compact import compact, compact_plan
from fastprune.export import file_size, save_sparse
from fastprune.report import module_flops

from fastprune.data import get_dls
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.torch_core import set_seed

warnings.filterwarnings('ignore', category=FutureWarning)  # torchvision's `torch.jit.script` notice
warnings.filterwarnings('ignore', message='compact removes')  # what couplings keep is in the zoo's table (bench/compact_zoo.py)
SEED = 0

def vgg16_cifar(n_out=10):
    "torchvision VGG16's convolutions with a 32-px CIFAR-style head: global average pool and one Linear"
    return nn.Sequential(torchvision.models.vgg16(num_classes=n_out).features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, n_out))

def mobilenet_v2(n_out=10): return torchvision.models.mobilenet_v2(num_classes=n_out)
def resnet18(n_out=10): return torchvision.models.resnet18(num_classes=n_out)
def resnext26ts(n_out=10): return timm.create_model('resnext26ts', pretrained=False, num_classes=n_out)  # grouped 3x3 convs (32 channels a group)

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
    'ResNet-18': (resnet18, 32, None),
    'ResNeXt-26 (timm resnext26ts, grouped convs)': (resnext26ts, 32, None),
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

class EpochTimes(Callback):
    "Wall time of each training epoch (validation excluded), and the parameter count at its end"
    order = 100
    def before_fit(self): self.times,self.params = [],[]
    def before_train(self): self._t = time.perf_counter()
    def after_train(self): self.times.append(time.perf_counter() - self._t); self.params.append(n_params(self.learn.model))

class StepLosses(Callback):
    "The training loss of each step"
    order = 100
    def before_fit(self): self.losses = []
    def after_batch(self):
        if self.training: self.losses.append(float(self.loss))

def train_fit(factory, make_dls, epochs:int, shrink:bool)->dict:
    "One `fit_one_cycle` pruned to 50 % of filters in its first half, masked only or shrunk at the cut: epoch times, params, accuracy"
    set_seed(SEED)
    dls = make_dls()  # after the seed: a DataLoader draws its shuffling generator when it is built
    learn = Learner(dls, factory(), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    timer,losses,cc = EpochTimes(),StepLosses(),CompactCallback(warn=False)
    cbs = [SparsifyCallback(50, 'filter', end_pct=0.5), timer, losses] + ([cc] if shrink else [])
    with learn.no_bar(), learn.no_logging():
        t = time.perf_counter(); learn.fit_one_cycle(epochs, 1e-3, cbs=cbs); t = time.perf_counter() - t
        acc = float(learn.validate()[1])
    return dict(times=timer.times, params=timer.params, total=t, acc=acc, cut=cc.cuts[0]['seconds'] if cc.cuts else 0., losses=losses.losses)

def train_bench(quick:bool):
    "Masked-only against shrink-while-training fits, interleaved"
    epochs,rounds = (2, 1) if quick else (6, 2)
    make_dls = lambda: get_dls('digits', size=32, bs=64, n=256 if quick else None, device='cpu')
    dls = make_dls()
    half = epochs//2
    print(f'`fit_one_cycle({epochs}, 1e-3)` on the digits at 32 px ({len(dls.train_ds)} training images, batch 64), fastai Adam, with `SparsifyCallback(50, "filter", end_pct=0.5)`: '
          f'the filters reach 50 % at the end of epoch {half}. *masked* keeps the full-size network to the end; *shrunk* adds `CompactCallback()`, which cuts the dead channels '
          f'out when the pruning window closes, so that epochs {half+1} to {epochs} train the smaller network. Same seed, same batches; {rounds} rounds, the two fits alternating, medians.\n')
    rows,drift = [],{}
    for name,factory in (('VGG16 (CIFAR head)', vgg16_cifar), ('MobileNetV2', mobilenet_v2)):
        res = {False: [], True: []}
        for r in range(rounds):
            for shrink in ((False, True) if r % 2 == 0 else (True, False)): res[shrink].append(train_fit(factory, make_dls, epochs, shrink))
            print(f'  {name}, round {r+1}: done', file=sys.stderr, flush=True)
        med = lambda rs, f: statistics.median(f(x) for x in rs)
        a,b = res[False][0]['losses'],res[True][0]['losses']
        k = len(a)*half//epochs  # the first step on the compacted network
        rel = [abs(x-y)/abs(x) for x,y in zip(a, b)]
        drift[name] = (max(rel[:k]), max(rel[k:k+10]), max(rel[k:]))
        for shrink in (False, True):
            rs = res[shrink]
            rows.append(dict(model=name, arm='shrunk' if shrink else 'masked', before=med(rs, lambda x: statistics.median(x['times'][:half])),
                             after=med(rs, lambda x: statistics.median(x['times'][half:])), total=med(rs, lambda x: x['total']), acc=med(rs, lambda x: x['acc']),
                             p0=rs[0]['params'][0], p1=rs[0]['params'][-1], cut=med(rs, lambda x: x['cut'])))
    print('| model | fit | params in the last epochs | epoch before the cut (s) | epoch after the cut (s) | whole fit (s) | whole fit, shrunk / masked | final accuracy |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    for a,b in zip(rows[::2], rows[1::2]):
        for r in (a, b):
            ratio = f"**{b['total']/a['total']:.2f}**" if r is b else ''
            print(f"| {r['model']} | {r['arm']} | {r['p1']/1e6:.2f} M | {r['before']:.2f} | {r['after']:.2f} | {r['total']:.1f} | {ratio} | {r['acc']:.3f} |")
    print('\nTraining losses of the shrunk fit against the masked one, step by step (largest relative difference): ' +
          '; '.join(f'{n}: {d[0]:.0e} before the cut, {d[1]:.0e} over the 10 steps after it, {d[2]:.0e} over the rest' for n,d in drift.items()) +
          '. The cut leaves the function and the optimizer state as they were, so the steps after it repeat the masked fit up to float rounding, '
          'which a chaotic training then amplifies; MobileNetV2 also has a `Dropout` before its classifier, whose random mask is drawn over the '
          'smaller width once its input channels are cut, so its two fits take different, equally likely paths from the first step after the cut. '
          'The two final accuracies are one seed each: compare them with the spread between seeds, not with each other.')
    print('\nThe cut itself (tracing, planning, cutting, checking the outputs, moving the optimizer state) took ' +
          ', '.join(f"{b['cut']:.1f} s for {b['model']}" for b in rows[1::2]) + '.')

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='few runs: a smoke test, not a measurement')
    p.add_argument('--train', action='store_true', help='time training, masked only against shrunk while training, instead of inference')
    args = p.parse_args(argv)
    reps1,reps64,warm = (5, 2, 1) if args.quick else (60, 12, 3)
    print(f'Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} thread{"s"*(torch.get_num_threads()>1)}), '
          f'torchvision {torchvision.__version__}, Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start')
    env = ' '.join(f'{k}={os.environ[k]}' for k in ('OMP_NUM_THREADS',) if k in os.environ)
    print(f'Command: `{(env + " ") if env else ""}python {" ".join(map(shlex.quote, ["bench/compact.py"] + sys.argv[1:]))}`\n')
    if args.train:
        t0 = time.time(); train_bench(args.quick)
        return print(f'\nLoad average {os.getloadavg()[0]:.2f} at the end; total {time.time()-t0:.0f} s.')
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

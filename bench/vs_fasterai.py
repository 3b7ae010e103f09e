"""fastprune and fasterai 0.4.1 side by side, in one process, interleaved: the cost of one pruning event, and of a whole pruned fit.

fasterai is not a dependency of fastprune; install it for this benchmark only, into the same environment:

    pip install fasterai==0.4.1 --no-deps einops

Run from the repository root: `python bench/vs_fasterai.py` (about 10 minutes on a quiet 2-core CPU), or `--quick` (a smoke test).
It prints markdown tables: the per-event cost of each library's `Sparsifier` (the same model, the same ramp of targets), and
`fit_one_cycle` dense, with fastprune's `SparsifyCallback` and with fasterai's, from the same seed on the same batches.
"""
from __future__ import annotations
import argparse, contextlib, copy, gc, io, os, statistics, sys, time, warnings
from pathlib import Path

def fasterai_or_exit():
    "fasterai 0.4.1's sparsifier, callback, criterion and schedule, or a clean exit that says how to get them"
    try:
        import fasterai
        from fasterai.sparse.sparsifier import Sparsifier as FaSparsifier
        from fasterai.sparse.sparsify_callback import SparsifyCallback as FaCallback
        from fasterai.core.criteria import large_final
        from fasterai.core.schedule import one_cycle
    except ImportError as e:
        print(f'fasterai is not installed ({e}). This benchmark compares against it; install it for the benchmark only:\n\n'
              '    pip install fasterai==0.4.1 --no-deps einops\n')
        sys.exit(0)
    if fasterai.__version__ != '0.4.1': print(f'note: fasterai {fasterai.__version__} is installed; the tables were made with 0.4.1\n')
    return FaSparsifier,FaCallback,large_final,one_cycle

if __name__ == '__main__': FA = fasterai_or_exit()

sys.path.insert(0, str(Path(__file__).parent))
import torch, torchvision
from torch import nn
from fastai.basics import Learner, CrossEntropyLossFlat, accuracy, set_seed
import fastai.callback.progress  # noqa: F401 -- Learner.no_bar
from fastprune.all import Sparsifier, SparsifyCallback
from overhead import digits, make_dls, machine_cpu, table, environment

warnings.filterwarnings('ignore')
LR,SEED,SPARSITY,NOISY = 1e-3,0,80.,0.2
RAMP = [float(t) for t in range(5, 85, 5)]  # the targets of the callback's 16 events on the way to 80 %

def vgg16_cifar(n_out=10):
    "torchvision's VGG16-BN convolutions with a 32-px CIFAR-style head: global average pool and one Linear"
    return nn.Sequential(torchvision.models.vgg16_bn(num_classes=n_out).features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, n_out))
def mobilenet_v2(n_out=10): return torchvision.models.mobilenet_v2(num_classes=n_out)

# name -> (factory, (epochs, train batches, valid batches) of the timed fits: full, quick)
archs = {'VGG16-BN (CIFAR head)': (vgg16_cifar, ((3, 23, 2), (1, 3, 1))), 'MobileNetV2': (mobilenet_v2, ((5, 23, 5), (1, 6, 1)))}

# --- 1. one pruning event ------------------------------------------------------------------------------------------------
# what the two libraries do in one event, in the same words: (label, fastprune Sparsifier kwargs, fasterai granularity, context)
events = [('weight, local', dict(granularity='weight', context='local'), 'weight', 'local'),
          ('weight, global, normalize="none"', dict(granularity='weight', context='global', normalize='none'), 'weight', 'global'),
          ('weight, global, normalize="lamp" (the default)', dict(granularity='weight', context='global', normalize='lamp'), 'weight', 'global'),
          ('filter, local', dict(granularity='filter', context='local'), 'filter', 'local')]

def ramp_fastprune(model, kw)->list:
    sp = Sparsifier(model, **kw)
    res = []
    for t in RAMP:
        t0 = time.perf_counter(); sp.prune(t); res.append(time.perf_counter()-t0)
    return res

def ramp_fasterai(model, gran, ctx)->list:
    FaSparsifier,_,large_final,_ = FA
    sp = FaSparsifier(model, gran, ctx, large_final)
    res = []
    for t in RAMP:
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()): sp.sparsify_model(t/100)
        res.append(time.perf_counter()-t0)
    return res

def event_costs(args):
    print('## 1. Cost of one pruning event\n')
    print(f'Each library\'s `Sparsifier` prunes the same freshly built model (seed {SEED}, {", ".join(f"{r:g}" for r in RAMP[:3])}, ..., {RAMP[-1]:g} %: the 16 events '
          'of a ramp to 80 %), by magnitude: fastprune\'s `sp.prune(t)`, fasterai\'s `sp.sparsify_model(t/100)`. Both compute the masks and zero the weights; '
          f'neither clears optimizer state here. {args.rounds} rounds, the two libraries alternating ramp by ramp; the cost of an event is its minimum over the rounds, '
          'and the table gives the mean over the 16 events. fasterai\'s global context compares raw magnitudes (fastprune\'s `normalize="none"`); '
          'it has no LAMP.\n')
    rows = []
    for name,(factory,_) in archs.items():
        for label,kw,gran,ctx in events:
            fp,fa = [float('inf')]*len(RAMP),[float('inf')]*len(RAMP)
            for r in range(args.rounds):
                for who in (('fp', 'fa') if r % 2 == 0 else ('fa', 'fp')):
                    torch.manual_seed(SEED); m = factory()
                    gc.collect()
                    ts = ramp_fastprune(m, kw) if who == 'fp' else ramp_fasterai(m, gran, ctx)
                    if who == 'fp': fp = [min(a, b) for a,b in zip(fp, ts)]
                    else: fa = [min(a, b) for a,b in zip(fa, ts)]
            a,b = 1e3*statistics.fmean(fp),1e3*statistics.fmean(fa)
            rows.append([name, label, f'{a:.1f}', f'{b:.1f}', f'**{a/b:.2f}**', f'{1e3*max(fp):.1f}', f'{1e3*max(fa):.1f}'])
            print(f'  {name}, {label}: fastprune {a:.1f} ms, fasterai {b:.1f} ms', file=sys.stderr, flush=True)
    table(['model', 'granularity, context', 'fastprune (ms)', 'fasterai (ms)', 'ratio', 'fastprune, slowest event (ms)', 'fasterai, slowest event (ms)'], rows)

# --- 2. whole fit --------------------------------------------------------------------------------------------------------
def fit(factory, data, size, who:str)->tuple:
    "One `fit_one_cycle` from the same seed and the same batches: (wall s, cores used by other processes, final sparsity %)"
    ep,ntr,nva = size
    set_seed(SEED)
    model = factory()
    learn = Learner(make_dls(data, ntr, nva), model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=LR)
    if who == 'fastprune': cbs = [SparsifyCallback(SPARSITY)]
    elif who == 'fasterai':
        _,FaCallback,large_final,one_cycle = FA
        cbs = [FaCallback(SPARSITY/100, 'weight', 'local', large_final, one_cycle)]
    else: cbs = []
    gc.collect(); gc.disable()
    try:
        with learn.no_bar(), learn.no_logging(), contextlib.redirect_stdout(io.StringIO()):
            t,c,(b,st) = time.perf_counter(),time.process_time(),machine_cpu()
            learn.fit_one_cycle(ep, LR, cbs=cbs)
            t,c,(b1,st1) = time.perf_counter()-t,time.process_time()-c,machine_cpu()
    finally: gc.enable()
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    sp = 100*(1 - sum(int(torch.count_nonzero(w)) for w in convs)/sum(w.numel() for w in convs))
    return t,max(0., b1-b-c + st1-st)/t,sp

def whole_fit(data, args):
    print('## 2. Whole fit\n')
    print(f'`learn.fit_one_cycle` dense, with fastprune\'s `SparsifyCallback({SPARSITY:g})` (weight, local, one-cycle, its defaults) and with fasterai\'s '
          f'`SparsifyCallback({SPARSITY/100:g}, "weight", "local", large_final, one_cycle)`: the same target on the same schedule shape, from the same seed on the '
          f'same batches, fastai Adam at lr {LR:g}, batch 64, 32-px digits, no progress bar or logging, garbage collector paused. The three fits of a round run '
          f'in a rotating order; {args.rounds} rounds after a short warm-up; medians. A round with more than {NOISY} cores of other load is run again (once).\n')
    rows = []
    for name,(factory,sizes) in archs.items():
        size = sizes[1] if args.quick else sizes[0]
        fit(factory, data, (1, 2, 1), 'dense'); fit(factory, data, (1, 2, 1), 'fastprune'); fit(factory, data, (1, 2, 1), 'fasterai')  # warm-up
        whos,res,reruns = ['dense', 'fastprune', 'fasterai'],{},0
        r = 0
        while r < args.rounds:
            order = whos[r % 3:] + whos[:r % 3]
            got = {w: fit(factory, data, size, w) for w in order}
            if max(g[1] for g in got.values()) > NOISY and reruns < args.rounds: reruns += 1; continue
            for w,g in got.items(): res.setdefault(w, []).append(g)
            r += 1
        med = {w: statistics.median(g[0] for g in v) for w,v in res.items()}
        ep,ntr,_ = size
        rows.append([name, f'{ep} x {ntr} = {ep*ntr}', f'{med["dense"]:.2f}', f'{med["fastprune"]:.2f}', f'{med["fasterai"]:.2f}',
                     f'**{med["fastprune"]/med["dense"]:.3f}**', f'**{med["fasterai"]/med["dense"]:.3f}**',
                     f'{statistics.fmean(g[2] for g in res["fastprune"]):.1f} / {statistics.fmean(g[2] for g in res["fasterai"]):.1f}',
                     f'{max(g[1] for v in res.values() for g in v):.2f}', reruns])
        print(f'  {name}: dense {med["dense"]:.2f} s, fastprune {med["fastprune"]:.2f} s, fasterai {med["fasterai"]:.2f} s', file=sys.stderr, flush=True)
    table(['model', 'epochs x batches = steps', 'dense (s)', 'fastprune (s)', 'fasterai (s)', 'fastprune / dense', 'fasterai / dense',
           'conv sparsity at the end, fastprune / fasterai (%)', 'other load, max (cores)', 'rounds rerun'], rows)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='a much shorter run: a smoke test, not a measurement')
    p.add_argument('--rounds', type=int, default=None, help='rounds of each comparison (default 3, 1 with --quick)')
    p.add_argument('--only', choices=['events', 'fit'], help='run one of the two sections')
    args = p.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    t0 = time.perf_counter()
    print('# fastprune against fasterai 0.4.1\n')
    environment(extra=f'fasterai {__import__("fasterai").__version__}')
    print()
    if args.only != 'fit': event_costs(args)
    if args.only != 'events': whole_fit(digits(), args)
    print(f'- load average at end (1/5/15 min): {" / ".join(f"{v:.2f}" for v in os.getloadavg())}')
    print(f'- total benchmark time: {time.perf_counter()-t0:.0f} s')

if __name__ == '__main__': main()

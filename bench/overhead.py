"""What pruning costs on CPU: whole-fit time with and without `SparsifyCallback`, one pruning event, the per-step masking, and mask memory.

Run from the repository root: `python bench/overhead.py` (about 4-5 minutes on a quiet 2-core CPU; pairs of fits disturbed by other processes are rerun)
or `python bench/overhead.py --quick` (under 2 minutes, a smoke test),
or `python bench/overhead.py --long` (about 20 minutes: whole fits of 184 and 276 steps, where the 16 pruning events weigh less).
It prints markdown tables, ready to paste into docs and release notes."""
from __future__ import annotations
import argparse, gc, math, os, platform, shlex, statistics, sys, time, warnings
from contextlib import contextmanager
import torch, torchvision, fastai
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset
from fastai.basics import Learner, DataLoaders, CrossEntropyLossFlat, accuracy, set_seed
from fastai.optimizer import Adam
import fastai.callback.progress  # noqa: F401 -- adds `Learner.no_bar`
import fastprune
import fastprune.sparsifier as _spmod
from fastprune.all import *
from fastprune.schedules import snap_to_grid  # the callback's grid of `min_delta` points

warnings.filterwarnings('ignore', category=FutureWarning)  # torchvision's `torch.jit.script` notice, printed on import of some models
BS,LR,SPARSITY,SEED = 64,1e-3,80.,0
NOISY = 0.2  # cores used by other processes during a pair of fits above which the pair is run again
FULL_STEPS = 25*782  # a full-scale run of the study: 25 epochs of CIFAR10's 50,000 images at batch 64

# --- models and data -------------------------------------------------------------------------------------------------
def vgg16_cifar(n_out=10):
    "torchvision VGG16's convolutions with a 32-px CIFAR-style head: global average pool and one Linear"
    return nn.Sequential(torchvision.models.vgg16(num_classes=n_out).features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, n_out))

def mobilenet_v2(n_out=10): return torchvision.models.mobilenet_v2(num_classes=n_out)

# name -> (factory, sizes): `full`/`quick`/`long` are (epochs, train batches per epoch, valid batches) of the timed fits; `pairs`, `reps` (train steps, events) and
# `mreps` (per-step masking) are repeat counts, (full, quick)
archs = {
    'VGG16 (CIFAR head)': (vgg16_cifar,  dict(full=(3, 23, 2), quick=(1, 3, 1), long=(8, 23, 2), pairs=(2, 1), reps=(5, 3), mreps=(20, 5))),
    'MobileNetV2':        (mobilenet_v2, dict(full=(5, 23, 5), quick=(1, 6, 1), long=(12, 23, 5), pairs=(3, 1), reps=(9, 3), mreps=(50, 10))),
}

def digits():
    "scikit-learn's digits, upscaled to 32 px and 3 channels, in a fixed shuffled order"
    from sklearn.datasets import load_digits
    X,y = load_digits(return_X_y=True)
    x = F.interpolate(torch.tensor(X, dtype=torch.float32).view(-1,1,8,8)/16., size=32, mode='bilinear').expand(-1,3,-1,-1).contiguous()
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(SEED))
    return x[idx],torch.tensor(y)[idx]

def make_dls(data, n_train:int, n_valid:int):
    x,y = data
    tr,va = slice(0, n_train*BS),slice(n_train*BS, (n_train+n_valid)*BS)
    return DataLoaders.from_dsets(TensorDataset(x[tr], y[tr]), TensorDataset(x[va], y[va]), bs=BS, num_workers=0, device=torch.device('cpu'))

# --- timing helpers --------------------------------------------------------------------------------------------------
def median(xs): return statistics.median(xs)

def timeit(f, reps:int, setup=None)->list:
    "Wall times in seconds of `reps` calls of `f` (each after `setup`, untimed)"
    res = []
    for _ in range(reps):
        if setup is not None: setup()
        t = time.perf_counter(); f(); res.append(time.perf_counter()-t)
    return res

@contextmanager
def timers(spec:dict, acc:dict|None):
    "Wrap functions (`{class or module: [names]}`) with wall-clock accumulators `acc[name] = [calls, seconds]`, for the `with` block"
    saved = []
    def wrap(k, f):
        c = acc.setdefault(k, [0, 0.])
        def g(*a, **kw):
            t = time.perf_counter()
            try: return f(*a, **kw)
            finally: c[0] += 1; c[1] += time.perf_counter()-t
        return g
    try:
        for o,names in spec.items():
            for n in names:
                f = vars(o)[n]; saved.append((o, n, f)); setattr(o, n, wrap(f'{o.__name__.split(".")[-1]}.{n}', f))
        yield acc
    finally:
        for o,n,f in saved: setattr(o, n, f)

# The callback's events, and what they call (module functions are looked up at call time, so wrapping the module's names times them)
timed = {SparsifyCallback: ['before_fit', 'before_batch', 'before_step', 'after_step', 'after_fit', '_measured', '_targets_at'],
         Sparsifier: ['_bind', 'plan', 'prune', '_scores', '_choose', 'clear_state', 'mask_grads', 'apply', 'sparsity', 'pair_bn', 'adopt_zeros'],
         _spmod: ['select', 'smallest']}
TOP = ['before_fit', 'before_batch', 'before_step', 'after_step', 'after_fit', '_measured']

def machine_cpu()->tuple:
    "Seconds of CPU the whole machine has spent busy, and stolen by the hypervisor, since boot (from /proc/stat)"
    v = [int(o) for o in open('/proc/stat').readline().split()[1:9]]
    hz = os.sysconf('SC_CLK_TCK')
    return (v[0]+v[1]+v[2]+v[5]+v[6])/hz,v[7]/hz

def fit(factory, data, size, pruned:bool, acc:dict|None=None, context:str='local'):
    "One `fit_one_cycle` from the same seed and the same batches: (wall s, CPU s, pruning events, cores used by other processes); with `acc`, time the callback's calls into it"
    ep,ntr,nva = size
    set_seed(SEED)
    learn = Learner(make_dls(data, ntr, nva), factory(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, lr=LR)
    cbs = [SparsifyCallback(sparsity=SPARSITY, context=context)] if pruned else []
    gc.collect(); gc.disable()  # a collection inside one of the two arms would be noise
    try:
        with learn.no_bar(), learn.no_logging(), timers(timed if acc is not None else {}, acc):
            t,c,(b,st) = time.perf_counter(),time.process_time(),machine_cpu()
            learn.fit_one_cycle(ep, LR, cbs=cbs)
            t,c,(b1,st1) = time.perf_counter()-t,time.process_time()-c,machine_cpu()
    finally: gc.enable()
    return t,c,(learn.sparsifier.events if pruned else 0),max(0., b1-b-c + st1-st)/t

def train_step_time(factory, data, reps:int)->float:
    "Median wall time of one training step (forward, backward, fastai Adam step) at batch 64, 32 px"
    set_seed(SEED)
    m = factory().train()
    opt = Adam(m.parameters(), lr=LR)
    x,y = data[0][:BS],data[1][:BS]
    def step():
        loss = F.cross_entropy(m(x), y); loss.backward(); opt.step(); opt.zero_grad()
    step(); step()  # warm-up: oneDNN primitives and optimizer state
    return median(timeit(step, reps))

def sched_values(total:int)->list:
    "The callback's default schedule (one-cycle, 0 -> SPARSITY over the whole fit), at the end of each of `total` steps"
    f = get_schedule('one_cycle')
    return [f(0., SPARSITY, (i+1)/total) for i in range(total)]

MIN_DELTA = SparsifyCallback(1).min_delta  # the callback's default

def count_events(sp, total:int, min_delta:float=MIN_DELTA)->int:
    "Pruning events of a fit of `total` steps, by the callback's rule: the schedule snapped to a grid of `min_delta` points, an event whenever that moves one group or more"
    key,n = sp.plan(0.),0
    for s in sched_values(total):
        k = sp.plan([snap_to_grid(s, 0., SPARSITY, min_delta)]*len(sp.layers))  # a list: no warning for values below 1 %
        if k != key: key,n = k,n+1
    return n

# --- tables ----------------------------------------------------------------------------------------------------------
def table(cols, rows):
    print('| ' + ' | '.join(cols) + ' |')
    print('|' + '|'.join('---' if i == 0 else '---:' for i in range(len(cols))) + '|')
    for r in rows: print('| ' + ' | '.join(map(str, r)) + ' |')
    print()

def fmt_bytes(n): return f'{n/2**20:.2f} MiB' if n >= 2**20 else f'{n/2**10:.1f} KiB'
def pct(a, b): return f'{100*a/b:.1f} %'

def environment(extra:str=''):
    "The command, the machine, the library versions and the load: the lines every benchmark's output starts with"
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor() or '?')
    print(f'- command: `{shlex.join(getattr(sys, "orig_argv", [sys.executable] + sys.argv))}`')
    print(f'- machine: {cpu}, {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable), {platform.system()} {platform.release()}')
    print(f'- torch {torch.__version__} ({torch.get_num_threads()} threads), torchvision {torchvision.__version__}, fastai {fastai.__version__}, '
          f'fastprune {fastprune.__version__}{", " + extra if extra else ""}, Python {platform.python_version()}')
    print(f'- load average at start (1/5/15 min): {" / ".join(f"{v:.2f}" for v in os.getloadavg())}')

def header(args):
    print('# fastprune overhead benchmark\n')
    environment()
    print(f'- mode: {_mode(args)}; SparsifyCallback(sparsity={SPARSITY:g}) with its defaults (weight, local, large_final, one_cycle, min_delta={MIN_DELTA:g}), '
          f'fastai Adam, lr {LR:g}, batch {BS}, 32x32 digits (scikit-learn, upscaled), seed {SEED}\n')

def _mode(args)->str: return 'quick' if args.quick else 'long' if args.long else 'full'

# --- 1. whole fit ------------------------------------------------------------------------------------------------------
def whole_fit(data, args):
    print('## 1. Whole-fit overhead\n')
    print('`learn.fit_one_cycle` with and without `SparsifyCallback`, from the same seed on the same batches (validation and the sparsity column included), '
          'no progress bar or logging, garbage collector paused. One short warm-up pair, then pairs whose order alternates (dense first, then pruned first); '
          'median of each arm and median of the per-pair ratios. The CPU-time ratio uses process time (both threads), which is less sensitive to other load on the machine. '
          'The pruned fits run with timers around the callback\'s calls (section 6); they cost about a microsecond per call.\n')
    rows,res = [],{}
    ctxs = ['local', 'global'] if args.context == 'both' else [args.context]
    for name,(factory,cfg) in archs.items():
      for ctx in ctxs:
        size,pairs = cfg[_mode(args)],args.pairs or cfg['pairs'][args.quick]
        for pruned in (False, True): fit(factory, data, (1, 2, 1), pruned, context=ctx)  # warm-up: oneDNN primitives, allocator, lazy imports
        d,p,dc,pc,ev,acc,oth,bad,inside = [],[],[],[],0,{},[],0,[]
        for i in range(2*pairs):  # a pair disturbed by other processes is run again, up to `pairs` times
            if len(d) == pairs: break
            got,tmp = {},{}
            for pruned in ((False, True) if i % 2 == 0 else (True, False)):
                got[pruned] = fit(factory, data, size, pruned, tmp if pruned else None, ctx)
            o = max(got[False][3], got[True][3]); oth.append(o)
            if o > args.noisy and bad < pairs and i < 2*pairs-1: bad += 1; continue
            (t,c,_,_),(tp,cp,ev,_) = got[False],got[True]
            d.append(t); dc.append(c); p.append(tp); pc.append(cp)
            cb = sum(tmp.get(f'SparsifyCallback.{n}', [0, 0.])[1] for n in TOP); inside.append(tp/(tp-cb))
            for k,(n,v) in tmp.items(): a = acc.setdefault(k, [0, 0.]); a[0] += n; a[1] += v
        pairs = len(d)
        rs = [b/a for a,b in zip(d, p)]
        ep,ntr,_ = size
        key = name if ctx == ctxs[0] else f'{name}, {ctx}'
        res[key] = dict(ratio=median(rs), dense=median(d), pruned=median(p), steps=ep*ntr, events=ev, pairs=pairs, acc=acc, fit=sum(p)/pairs)
        rows.append([name, ctx, f'{ep} x {ntr} = {ep*ntr}', ev, pairs, f'{median(d):.2f}', f'{median(p):.2f}', f'{median(p)/median(d):.3f}',
                     f'**{median(rs):.3f}**', f'{min(rs):.3f}-{max(rs):.3f}', f'{median(pc)/median(dc):.3f}',
                     f'{median(inside):.3f}', f'{median(oth):.2f} (max {max(oth):.2f})', bad])
    table(['model', 'context', 'epochs x batches = steps', 'pruning events', 'pairs', 'dense fit (s)', 'pruned fit (s)', 'ratio of medians',
           'median per-pair ratio', 'per-pair range', 'CPU-time ratio', 'in-callback ratio', 'other load (cores)', 'pairs rerun'], rows)
    print('`in-callback ratio`: pruned fit / (pruned fit - time spent inside the callback\'s events), median over the pruned fits: '
          'the overhead measured within each pruned fit, so it does not depend on the dense fits (it leaves out indirect costs such as caches the callback evicts). '
          'Even with no other load, this virtual machine\'s speed drifts by up to 30 % over tens of seconds: compare the per-pair range with it.\n')
    print('`other load`: cores busy with other processes or stolen by the hypervisor during a pair of fits (from /proc/stat; the larger of its two fits), median and max over all pairs run. '
          f'This machine has {os.cpu_count()}: with other work on it, a parallel op waits for a descheduled thread, and the timings measure contention. '
          f'A pair above {args.noisy} cores is discarded and run again (`pairs rerun`, at most as many as `pairs`).\n')
    return res

# --- 2. pruning events and 3. per-step masking ------------------------------------------------------------------------------
configs = [('weight', 'local'), ('weight', 'global'), ('filter', 'local'), ('filter', 'global')]

def with_grads_and_state(m, data):
    "One forward, backward and fastai Adam step, so that gradients and optimizer state exist"
    opt = Adam(m.parameters(), lr=LR)
    F.cross_entropy(m(data[0][:BS]), data[1][:BS]).backward(); opt.step()
    return opt

def event_costs(data, args, fits):
    print('## 2. Cost of one pruning event\n')
    print('One event of the callback is `sp.prune(s)` followed by `sp.clear_state(opt)` (the first moments of pruned entries set to zero, their second moments held at 1). '
          f'Timed on masks already at 30 % sparsity, each event moving the target up by `min_delta` = {MIN_DELTA:g} points as the callback does, '
          'on a model with gradients and Adam state. Median over repeats; `events in fit` counts the events of the callback\'s rule (the schedule snapped to a grid of `min_delta` points, an event whenever that moves one group or more) '
          f'for the benchmarked fit and for a full-scale fit of {FULL_STEPS:,} steps (25 epochs of CIFAR10 at batch 64); `min_delta=0` is an event whenever one group moves, as fasterai does.\n')
    rows,steps,events = [],{},{}
    for name,(factory,cfg) in archs.items():
        reps = cfg['reps'][args.quick]
        steps[name] = st = train_step_time(factory, data, reps)
        for g,c in configs:
            set_seed(SEED)
            m = factory().train()
            opt = with_grads_and_state(m, data)
            sp = Sparsifier(m, g, c)
            total = fits[name]['steps']
            n = len(sp.layers)
            it = iter([min(30. + MIN_DELTA*(j+1), SPARSITY) for j in range(reps)])
            sp.prune([30.]*n)
            ps,cs = [],[]
            for _ in range(reps):
                s = [next(it)]*n
                ps += timeit(lambda: sp.prune(s), 1); cs += timeit(lambda: sp.clear_state(opt), 1)
            ev,evf,ev0 = count_events(sp, total),count_events(sp, FULL_STEPS),count_events(sp, total, 0.)
            e = median(ps) + median(cs)
            events[(name, g, c)] = e,evf
            rows.append([name, g, c, len(sp.layers), f'{1e3*median(ps):.1f} ({1e3*min(ps):.1f})', f'{1e3*median(cs):.1f} ({1e3*min(cs):.1f})', f'{1e3*e:.1f}', pct(e, st), f'{ev}/{total}',
                         f'{ev0}/{total}', f'{evf:,}/{FULL_STEPS:,}'])
            del m, opt, sp; gc.collect()
    table(['model', 'granularity', 'context', 'layers', 'prune (ms), median (min)', 'clear_state (ms), median (min)', 'event (ms)', 'event / train step', 'events in fit', 'with min_delta=0', 'events full-scale'], rows)
    print('Train step (forward, backward, Adam) at batch 64, median: ' + ', '.join(f'{n} {1e3*t:.0f} ms' for n,t in steps.items()) + '\n')
    return steps,events

def step_costs(data, args, steps):
    print('## 3. Per-step cost of the masks\n')
    print('`sp.mask_grads()` (before the optimizer step) and `sp.apply()` (after it), at 80 % sparsity, with gradients present: the fixed price of every step. '
          'With fastai\'s `Adam`, as in these fits, the callback runs only `mask_grads`: Adam moves a weight whose gradient and first moment are zero by exactly zero '
          '(`optimizer_keeps_zeros`), so the masks need no re-applying. An optimizer that can move pruned weights, such as `Lookahead` (`ranger`), gets `apply` after every step too.\n')
    rows,res = [],{}
    for name,(factory,cfg) in archs.items():
        reps = cfg['mreps'][args.quick]
        for g in ('weight', 'filter'):
            set_seed(SEED)
            m = factory().train()
            with_grads_and_state(m, data)
            sp = Sparsifier(m, g, 'local').prune(SPARSITY)
            mg,ap = timeit(sp.mask_grads, reps),timeit(sp.apply, reps)
            res[(name, g)] = median(mg)
            rows.append([name, g, len(sp._ts), f'{1e3*median(mg):.2f} ({1e3*min(mg):.2f})', f'{1e3*median(ap):.2f} ({1e3*min(ap):.2f})',
                         f'{1e3*median(mg):.2f}', pct(median(mg), steps[name]), f'{1e3*(median(mg) + median(ap)):.2f}'])
            del m, sp; gc.collect()
    table(['model', 'granularity', 'masked tensors', 'mask_grads (ms), median (min)', 'apply (ms), median (min)', 'per step with Adam (ms)', 'per step / train step',
           'per step with `apply` too (ms)'], rows)
    print('Median, with the minimum in brackets: other load on the machine only ever adds time, so a median far above the minimum means the machine was busy.\n')
    return res

# --- 4. memory ---------------------------------------------------------------------------------------------------------
def nbytes(ts): return sum(t.numel()*t.element_size() for t in ts if t is not None)

def memory(data):
    print('## 4. Memory held by the sparsifier\n')
    print('Masks are bool tensors at group resolution (the bias and BatchNorm entries a filter feeds share its mask). '
          'Criteria that score against the starting weights (`large_init`, `movement`) keep a copy of them; `taylor` reads `.grad`, which exists anyway.\n')
    rows = []
    for name,(factory,_) in archs.items():
        set_seed(SEED)
        m = factory()
        for g,crit in [('weight', 'large_final'), ('filter', 'large_final'), ('weight', 'random'), ('weight', 'taylor'), ('weight', 'large_init'), ('weight', 'movement')]:
            sp = Sparsifier(m, g, 'local', crit)
            if crit == 'taylor': with_grads_and_state(m, data)
            sp.prune(SPARSITY)
            w = nbytes(sp.layers.attrgot('weight'))
            mk,extra = nbytes(sp.layers.attrgot('mask')),nbytes(sp.layers.attrgot('init'))
            rows.append([name, g, crit, fmt_bytes(w), fmt_bytes(mk), pct(mk, w), fmt_bytes(extra) if extra else '0', pct(mk+extra, w)])
            sp.strip()
            m = factory()  # a fresh dense model for the next configuration
    table(['model', 'granularity', 'criteria', 'pruned weights', 'masks', 'masks / weights', 'criterion state', 'total / weights'], rows)

# --- 5. projection and 6. where the time goes ------------------------------------------------------------------------------------------------
def projection(steps, events, per_step):
    print('## 5. Projected overhead of a full-scale fit\n')
    print(f'The same callback over {FULL_STEPS:,} steps (25 epochs of CIFAR10 at batch 64), from the costs above: '
          '(events x event cost + steps x per-step cost) / (steps x train step). Fixed costs (building the sparsifier, the last prune, the sparsity column) are left out.\n')
    rows = []
    for (name,g,c),(e,n) in events.items():
        extra = n*e + FULL_STEPS*per_step[(name, g)]
        rows.append([name, g, c, f'{n:,}', f'{1e3*e:.1f}', f'{1e3*per_step[(name, g)]:.2f}', f'{1e3*steps[name]:.0f}', f'**{1 + extra/(FULL_STEPS*steps[name]):.3f}**'])
    table(['model', 'granularity', 'context', 'events', 'event (ms)', 'per step (ms)', 'train step (ms)', 'projected ratio'], rows)

def profile(fits):
    print('## 6. Where the time goes\n')
    print('Timers around the callback\'s events and what they call, summed over the timed pruned fits of section 1 and divided by their number. '
          'Times are inclusive: `before_step` holds `plan`, `prune` and `clear_state`; `prune` holds `_scores`, `_choose` (which holds `select`, which holds `smallest`) and `apply`; '
          '`before_fit` holds `Sparsifier._bind` (which holds `adopt_zeros`). `_measured` is the sparsity column, a `ValueMetric` read once per epoch.\n')
    rows = []
    for name,r in fits.items():
        acc,k = r['acc'],r['pairs']
        g = lambda *ns: sum(acc.get(n, [0, 0.])[1] for n in ns)/k
        ev = g('SparsifyCallback.before_step') - g('Sparsifier.mask_grads')
        per = g('Sparsifier.mask_grads', 'SparsifyCallback.after_step')
        fixed = g(*[f'SparsifyCallback.{n}' for n in ['before_fit', 'before_batch', 'after_fit', '_measured']])
        extra = r['fit'] - r['dense']
        rows.append([name, f'{extra:.2f}', f'{ev:.2f} ({pct(ev, extra)})', f'{per:.2f} ({pct(per, extra)})', f'{fixed:.2f} ({pct(fixed, extra)})', f'{extra-ev-per-fixed:.2f}'])
    print('Summary: the pruned fit\'s extra time over the dense median, split into pruning events (`before_step` less `mask_grads`: `plan`, `prune`, `clear_state`), '
          'per-step masking (`mask_grads` and `after_step`, which holds `apply` when the optimizer needs it), and fixed costs (`before_fit`, `before_batch`, `after_fit`, the sparsity column). '
          'What is left is noise or effects outside the callback.\n')
    table(['model', 'extra time per fit (s)', 'events (s)', 'per-step masking (s)', 'fixed (s)', 'unaccounted (s)'], rows)
    for name,r in fits.items():
        acc,k,t = r['acc'],r['pairs'],r['fit']
        top = sum(acc.get(f'SparsifyCallback.{n}', [0, 0.])[1] for n in TOP)/k
        print(f'**{name}**: pruned fit {t:.2f} s on average, {r["events"]} pruning events in {r["steps"]} steps; '
              f'time inside the callback {top:.2f} s = {pct(top, t)} of the pruned fit; dense fit median {r["dense"]:.2f} s.\n')
        rows = [[f'`{n}`', c//k, f'{1e3*s/k:.1f}', f'{1e3*s/c:.2f}', pct(s/k, t)] for n,(c,s) in acc.items() if c]
        table(['call', 'calls per fit', 'ms per fit', 'ms per call', 'of the pruned fit'], rows)

# --- main --------------------------------------------------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='a much shorter run (fewer batches and repeats): a smoke test, not a measurement')
    p.add_argument('--long', action='store_true', help='longer whole fits (section 1): 8 epochs of VGG16, 12 of MobileNetV2')
    p.add_argument('--model', action='append', choices=list(archs), help='benchmark only this model (repeat for several; default: all)')
    p.add_argument('--context', choices=['local', 'global', 'both'], default='local', help='context of the whole fits of section 1 (default: %(default)s)')
    p.add_argument('--pairs', type=int, default=None, help='pairs of whole fits per model and context (default: 2 for VGG16, 3 for MobileNetV2, 1 with --quick)')
    p.add_argument('--noisy', type=float, default=NOISY, help=f'other load (cores) above which a pair of fits is run again (default {NOISY}); raise it on a shared machine')
    p.add_argument('--profile', action='store_true', help='always print where the time goes (by default only when an overhead ratio exceeds 1.03)')
    args = p.parse_args(argv)
    if args.quick and args.long: p.error('--quick and --long exclude each other')
    if args.pairs is not None and args.pairs < 1: p.error(f'--pairs must be at least 1, got {args.pairs}')
    if args.model:
        for k in [k for k in archs if k not in args.model]: del archs[k]
    t0 = time.perf_counter()
    header(args)
    data = digits()
    fits = whole_fit(data, args)
    steps,events = event_costs(data, args, fits)
    per_step = step_costs(data, args, steps)
    memory(data)
    projection(steps, events, per_step)
    over = {n: r['ratio'] for n,r in fits.items() if r['ratio'] > 1.03}
    if over: print('Whole-fit overhead above the 1.03 target: ' + ', '.join(f'{n} {r:.3f}' for n,r in over.items()) + '.\n')
    if over or args.profile: profile(fits)
    print(f'- load average at end (1/5/15 min): {" / ".join(f"{v:.2f}" for v in os.getloadavg())}')
    print(f'- total benchmark time: {time.perf_counter()-t0:.0f} s')

if __name__ == '__main__': main()

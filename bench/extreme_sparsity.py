"""Pushing sparsity further: what sensitivity allocation, global LAMP, wanda and distillation each buy at 90 and 95 %.

On the study's embedded default (MobileNetV2 on the digits, 32 px, 6 epochs of `fit_one_cycle`, pruning over the first half, the first
and depthwise convolutions dense, BatchNorm recalibrated: see `plan_study`), for both arms (pretrained, scratch) and each seed, this trains
the arm's dense baseline once, then each variant from the same starting weights and batches:

- `baseline`: the study's own setting, `SparsifyCallback(s)`: every layer to s (local), by |w|;
- `sensitivity`: per-layer targets from `allocate(sensitivity(dense), s)`, measured on the arm's trained dense model;
- `lamp`: one global ranking of LAMP scores (`context='global'`);
- `wanda`: `criteria='wanda'`, |w| times the norm of each layer's input;
- `distill`: the baseline, learning from the arm's own dense model (`DistillCallback(dense, alpha=0.5, T=4)`);
- `best`: the tools that beat the baseline on average over all the runs above, combined (sensitivity and LAMP exclude each other:
  the better of the two is kept).

It prints a markdown table of the mean change from each arm's own dense accuracy (points, mean over seeds) and saves a plot. Every run
is appended to `<out>/results.csv` as it finishes (written to a temporary file, then renamed), and a run already there is not trained
again: an interrupted measurement goes on where it stopped. The dense weights are kept in `<out>/weights/` (not meant to be committed).

Run from the repository root: `python bench/extreme_sparsity.py` (the whole measurement), or
`python bench/extreme_sparsity.py --arms pretrained --seeds 0 --sparsities 95 --variants baseline` (one run, to time it)."""
from __future__ import annotations
import argparse, copy, os, platform, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, torch, fastai
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
import fastprune
from fastai.vision.all import accuracy, set_seed
from fastprune.all import *
from fastprune.study import resolve_layers

warnings.filterwarnings('ignore')
SINGLES = ('baseline', 'sensitivity', 'lamp', 'wanda', 'distill')
VARIANTS = SINGLES + ('best',)
KEY = ['arm', 'seed', 'sparsity', 'variant']
SENS_SPARSITIES = (50, 70, 90, 95, 98, 99)  # beyond the targets: `allocate` never prunes a layer past the largest one measured

def default_cfgs(arms, seed:int)->dict:
    "The embedded default study's settings, {arm: (dense cfg, pruned cfg)}, from `plan_study` itself"
    plan = plan_study(arms=list(arms), sparsities=(0, 90), seeds=seed)
    return {a: tuple(c for c in plan if c['arm'] == a) for a in arms}

def make_learner(cfg:dict):
    "The study's data and learner for `cfg`, seeded as `train_run` seeds them"
    set_seed(cfg['seed'], reproducible=True)
    dls = get_dls(cfg['dataset'], size=cfg['size'], bs=cfg['bs'], n_per_class=cfg['n_per_class'], n=cfg['n'], n_valid=cfg['n_valid'], seed=cfg['seed'])
    pre = cfg['arm'] == 'pretrained'
    learn = create_learner(dls, cfg['arch'], pretrained=pre, weights=cfg['weights'] if pre else None, head=cfg['head'], metrics=accuracy)
    learn.to_channelslast(use_amp=False)
    return learn

def fit(learn, cfg:dict, cbs:list)->float:
    "Train as the study does (fit_one_cycle, then BatchNorm recalibration); the validation accuracy in percent"
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(cfg['epochs'], cfg['lr'], cbs=cbs)
        if cfg['recal_bn']: recalibrate_bn(learn)
        return 100*float(learn.validate()[1])

def dense_model(cfg:dict, out:Path)->tuple:
    "The arm's trained dense model and its accuracy, trained once and kept in `out`"
    fn = out/'weights'/f"dense_{cfg['arm']}_{cfg['seed']}_{cfg['epochs']}ep.pth"
    fn.parent.mkdir(exist_ok=True)
    learn = make_learner(cfg)
    if fn.is_file():
        d = torch.load(fn, map_location='cpu', weights_only=True)
        learn.model.load_state_dict(d['state_dict'])
        return learn,d['accuracy'],d['time']
    t0 = time.perf_counter()
    acc = fit(learn, cfg, [])
    tmp = fn.with_name(fn.name + '.tmp')
    torch.save(dict(state_dict=learn.model.state_dict(), accuracy=acc, time=time.perf_counter() - t0), tmp)
    os.replace(tmp, fn)
    return learn,acc,time.perf_counter() - t0

def sparsify_kwargs(cfg:dict, model)->dict:
    "The study's pruning settings"
    return dict(granularity=cfg['granularity'], schedule=cfg['schedule'], start_pct=cfg['start_pct'], end_pct=cfg['end_pct'],
                exclude=resolve_layers(model, cfg['exclude']))

def train_variant(tools:set, cfg:dict, s:float, dense, alloc_cache:dict)->dict:
    "Train one pruned run with `tools` (a subset of SINGLES minus 'baseline'); its accuracy, measured sparsity and time"
    t0 = time.perf_counter()
    target = s
    if 'sensitivity' in tools:  # before the learner is made: it draws no random numbers the run's batches depend on
        key = (cfg['arm'], cfg['seed'])
        if key not in alloc_cache:
            with dense.no_bar(): alloc_cache[key] = sensitivity(dense, SENS_SPARSITIES, cfg['granularity'], exclude=resolve_layers(dense.model, cfg['exclude']))
        target = allocate(alloc_cache[key], s)
    learn = make_learner(cfg)
    kw = sparsify_kwargs(cfg, learn.model)
    if 'lamp' in tools: kw['context'] = 'global'
    if 'wanda' in tools: kw['criteria'] = 'wanda'
    cbs = [SparsifyCallback(target, **kw)]
    if 'distill' in tools: cbs.append(DistillCallback(copy.deepcopy(dense.model), alpha=0.5, T=4.))
    acc = fit(learn, cfg, cbs)
    return dict(accuracy=acc, measured_sparsity=learn.sparsifier.sparsity(), time=time.perf_counter() - t0)

def read(fn:Path)->pd.DataFrame: return pd.read_csv(fn) if fn.is_file() else pd.DataFrame(columns=KEY + ['tools', 'accuracy', 'dense_accuracy', 'delta', 'measured_sparsity', 'time'])

def save_row(fn:Path, row:dict):
    "Add `row` to `fn`, replacing the row with its key; written to a temporary file, then renamed"
    df = read(fn)
    if len(df): df = df[~((df.arm == row['arm']) & (df.seed == row['seed']) & (df.sparsity == row['sparsity']) & (df.variant == row['variant']))]
    new = pd.DataFrame([row])
    df = pd.concat([df, new], ignore_index=True) if len(df) else new
    tmp = fn.with_name(fn.name + '.tmp')
    df.to_csv(tmp, index=False)
    os.replace(tmp, fn)

def done(df, arm, seed, s, v)->bool:
    return bool(len(df)) and bool(((df.arm == arm) & (df.seed == seed) & (df.sparsity == s) & (df.variant == v)).any())

def best_tools(df:pd.DataFrame)->set:
    "The single tools whose mean change beats the baseline's over every run measured; sensitivity and LAMP exclude each other"
    m = df[df.variant.isin(SINGLES)].groupby('variant').delta.mean()
    if 'baseline' not in m: return set()
    good = {v for v in m.index if v != 'baseline' and m[v] > m['baseline']}
    if {'sensitivity', 'lamp'} <= good: good.discard('sensitivity' if m['sensitivity'] < m['lamp'] else 'lamp')
    return good

def table(df:pd.DataFrame)->str:
    "Markdown: mean change from the arm's own dense accuracy, per variant, sparsity and arm"
    g = df.groupby(['variant', 'sparsity', 'arm']).agg(delta=('delta', 'mean'), n=('seed', 'nunique'), tools=('tools', 'first'))
    cols = [(s, a) for s in sorted(df.sparsity.unique()) for a in ('pretrained', 'scratch') if a in set(df.arm)]
    lines = ['| variant | ' + ' | '.join(f'{s:g} % {a}' for s,a in cols) + ' |', '|---|' + '---:|'*len(cols)]
    for v in [v for v in VARIANTS if v in set(df.variant)]:
        cells = [f"{g.loc[(v, s, a)].delta:+.2f}" + ('' if g.loc[(v, s, a)].n > 1 else ' (1 seed)') if (v, s, a) in g.index else '' for s,a in cols]
        name = v if v != 'best' else f"best ({df[df.variant == 'best'].tools.iloc[0]})"
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    dense = df.groupby('arm').dense_accuracy.mean()
    lines.append('\nDense accuracy (mean over seeds): ' + ', '.join(f'{a} {dense[a]:.2f} %' for a in dense.index))
    return '\n'.join(lines)

def plot(df:pd.DataFrame, fn:Path):
    "Bars of the mean change from dense accuracy, one group per (sparsity, arm), one bar per variant, the seeds as dots"
    groups = [(s, a) for s in sorted(df.sparsity.unique()) for a in ('pretrained', 'scratch') if a in set(df.arm)]
    vs = [v for v in VARIANTS if v in set(df.variant)]
    fig,ax = plt.subplots(figsize=(max(6, 2 + 1.6*len(groups)), 4))
    w = 0.8/len(vs)
    for j,v in enumerate(vs):
        for i,(s,a) in enumerate(groups):
            d = df[(df.variant == v) & (df.sparsity == s) & (df.arm == a)].delta
            if not len(d): continue
            x = i + (j - (len(vs)-1)/2)*w
            ax.bar(x, d.mean(), w, color=f'C{j}', label=v if i == 0 else None)
            ax.plot([x]*len(d), d, 'k.', ms=3)
    ax.axhline(0, color='k', lw=0.8); ax.axhline(-1, color='k', lw=0.8, ls='--')
    ax.set_xticks(range(len(groups))); ax.set_xticklabels([f'{s:g} %\n{a}' for s,a in groups])
    ax.set_ylabel('accuracy − dense accuracy (points)'); ax.legend(fontsize=8, ncol=2)
    ax.set_title('MobileNetV2 on digits: what each tool buys', fontsize=10)
    fig.tight_layout(); tmp = fn.with_name('tmp_' + fn.name); fig.savefig(tmp, dpi=120); plt.close(fig); os.replace(tmp, fn)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='bench/extreme_sparsity', help='folder for results.csv, the dense weights and the plot')
    p.add_argument('--arms', nargs='+', default=['pretrained', 'scratch'], choices=['pretrained', 'scratch'])
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    p.add_argument('--sparsities', type=float, nargs='+', default=[90., 95.])
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument('--epochs', type=int, default=None, help="epochs of every run (default: the study's); fewer only for a smoke test, into another --out")
    a = p.parse_args(argv)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    fn = out/'results.csv'
    print(f'fastprune {fastprune.__version__}, torch {torch.__version__}, fastai {fastai.__version__}, {platform.processor() or platform.machine()}, '
          f'{torch.get_num_threads()} threads', flush=True)
    todo = [v for v in a.variants if v != 'best'] + (['best'] if 'best' in a.variants else [])
    allocs = {}
    for v in todo:
        for seed in a.seeds:
            cfgs = default_cfgs(a.arms, seed)
            if a.epochs is not None: cfgs = {k: tuple(dict(c, epochs=a.epochs) for c in v) for k,v in cfgs.items()}
            for arm in a.arms:
                dcfg,pcfg = cfgs[arm]
                df = read(fn)
                if all(done(df, arm, seed, s, v) for s in a.sparsities): continue
                tools = best_tools(df) if v == 'best' else (set() if v == 'baseline' else {v})
                if v == 'best' and not tools: print('best: no tool beat the baseline, nothing to combine'); continue
                dense,dacc,dt = dense_model(dcfg, out)
                for s in a.sparsities:
                    if done(read(fn), arm, seed, s, v): continue
                    r = train_variant(tools, pcfg, s, dense, allocs)
                    row = dict(arm=arm, seed=seed, sparsity=s, variant=v, tools='+'.join(sorted(tools)) or 'none', accuracy=r['accuracy'],
                               dense_accuracy=dacc, delta=r['accuracy'] - dacc, measured_sparsity=r['measured_sparsity'], time=r['time'])
                    save_row(fn, row)
                    print(f"{arm} seed {seed} {s:g} % {v}: accuracy {r['accuracy']:.2f} % ({row['delta']:+.2f} from dense {dacc:.2f} %), "
                          f"sparsity {r['measured_sparsity']:.2f} %, {r['time']:.0f} s (dense: {dt:.0f} s)", flush=True)
    df = read(fn)
    df = df[df.arm.isin(a.arms) & df.seed.isin(a.seeds) & df.sparsity.isin(a.sparsities)]
    if not len(df): return
    print(table(df))
    plot(df, out/'extreme_sparsity.png')
    print(f"plot: {out/'extreme_sparsity.png'}")

if __name__ == '__main__': main()

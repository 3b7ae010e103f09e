"""What the shipped file costs and buys on CPU: dense float32, compacted float32 and compacted int8, all run by onnxruntime.

Trains VGG16 (CIFAR-style head) and MobileNetV2 briefly (6 epochs) on the digits at 32 px, twice from the same seed on the same batches: once dense, once
pruned to 50 % of their filters in the first half of the fit (`SparsifyCallback(50, 'filter', end_pct=0.5)`, with `CompactCallback`, which
cuts the dead channels out when the pruning window closes). The dense learner is exported with `learn.export_onnx` to float32; the pruned one
with `learn.export_onnx` to float32 and to int8 (onnxruntime's static quantization: QDQ format, per-channel weights, calibrated on 4 validation
batches). For each file, in onnxruntime: its size, its accuracy on the digits validation set, its latency at batch 1 and 64 (medians after warm-up,
the three files of a network alternated run by run so that other load on the machine hits them alike), and its speed-up against dense float32.
Prints markdown tables, ready to paste into the docs.

Run from the repository root: `OMP_NUM_THREADS=1 python bench/deploy.py` (about 10 minutes on a quiet 2-core CPU, most of it training VGG16);
`--threads N` gives onnxruntime N intra-op threads (default 1); `--quick` is a smoke test (under two minutes), not a measurement."""
from __future__ import annotations
import argparse, os, platform, shlex, statistics, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np, torch, torchvision
import onnxruntime as ort
from torch import nn
from fastprune.all import *
from fastprune.compact import CompactCallback
from fastprune.data import get_dls
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.metrics import accuracy
from fastai.torch_core import set_seed
sys.path.insert(0, str(Path(__file__).parent))
from compact import vgg16_cifar, mobilenet_v2, n_params, cpu_name  # bench/compact.py's

warnings.filterwarnings('ignore', category=FutureWarning)  # torchvision's `torch.jit.script` notice
warnings.filterwarnings('ignore', message='compact removes')  # what couplings keep is in the zoo's table (bench/compact_zoo.py)
SEED = 0

# name -> (factory, peak learning rate of `fit_one_cycle`: VGG16 has no BatchNorm, and trains from scratch at a lower one)
archs = {'VGG16 (CIFAR head)': (vgg16_cifar, 1e-3), 'MobileNetV2': (mobilenet_v2, 1e-2)}

def fit(factory, dls, epochs:int, lr:float, prune:bool)->Learner:
    "One `fit_one_cycle` from `SEED`: dense, or pruned to 50 % of filters in its first half and compacted when the window closes"
    set_seed(SEED)
    learn = Learner(dls, factory(), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    cbs = [SparsifyCallback(50, 'filter', end_pct=0.5), CompactCallback(warn=False)] if prune else []
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, lr, cbs=cbs)
    return learn

def session(fn, threads:int)->ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads,so.inter_op_num_threads,so.execution_mode = threads,1,ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(fn), so, providers=['CPUExecutionProvider'])

def valid_accuracy(sess, dl)->float:
    "Share of the validation set whose top class is the label, in onnxruntime"
    hits = [(sess.run(None, {'input0': x.cpu().numpy()})[0].argmax(1) == y.cpu().numpy()) for x,y in dl]
    return float(np.concatenate(hits).mean())

def timeit(sessions:list, x:np.ndarray, reps:int, warmup:int)->list:
    "Median wall time (s) of one run of each session on `x`, runs alternated between the sessions"
    ts = [[] for _ in sessions]
    for _ in range(warmup):
        for s in sessions: s.run(None, {'input0': x})
    for _ in range(reps):
        for s,t in zip(sessions, ts):
            t0 = time.perf_counter(); s.run(None, {'input0': x}); t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in ts]

def int8_isa()->str:
    "The CPU's int8 dot-product instructions, as /proc/cpuinfo names them"
    try: flags = set(next(l for l in open('/proc/cpuinfo') if l.startswith('flags')).split())
    except (OSError, StopIteration): return 'unknown'
    return ', '.join(f for f in ('avx512_vnni', 'avx_vnni', 'amx_int8') if f in flags) or 'none of avx512_vnni, avx_vnni, amx_int8'

def bench_arch(name, factory, lr, dls, epochs, threads, reps1, reps64, warm, tmp:Path)->list:
    "The three files of one network: rows of size, accuracy, agreement and latencies"
    dense,pruned = fit(factory, dls, epochs, lr, False),fit(factory, dls, epochs, lr, True)
    files = [('dense', 'float32', dense.export_onnx(tmp/f'{name}-dense.onnx'), n_params(dense.model)),
             ('compacted', 'float32', pruned.export_onnx(tmp/f'{name}-compacted.onnx'), n_params(pruned.model)),
             ('compacted', 'int8', pruned.export_onnx(tmp/f'{name}-int8.onnx', quantize='int8'), n_params(pruned.model))]
    sess = [session(fn, threads) for _,_,fn,_ in files]
    lat = {bs: timeit(sess, np.random.default_rng(SEED).standard_normal((bs, 3, 32, 32), dtype=np.float32), reps, warm) for bs,reps in ((1, reps1), (64, reps64))}
    return [dict(model=name, version=v, fmt=f, params=p, size=fn.stat().st_size, acc=valid_accuracy(s, dls.valid), agree=fn.agreement, n_agree=fn.n_checked,
                 ms1=lat[1][i], ms64=lat[64][i]) for i,((v,f,fn,p),s) in enumerate(zip(files, sess))]

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='one epoch on 256 images, few runs: a smoke test, not a measurement')
    p.add_argument('--threads', type=int, default=1, help="onnxruntime's intra-op threads (default 1)")
    args = p.parse_args(argv)
    epochs,n,(reps1,reps64,warm) = (1, 256, (10, 3, 1)) if args.quick else (6, None, (200, 30, 5))
    print(f'Machine: {cpu_name()}, {os.cpu_count()} cores (int8 instructions: {int8_isa()}); onnxruntime {ort.__version__} ({args.threads} intra-op thread{"s"*(args.threads>1)}), '
          f'torch {torch.__version__} ({torch.get_num_threads()} thread{"s"*(torch.get_num_threads()>1)} for training), Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at start')
    env = ' '.join(f'{k}={os.environ[k]}' for k in ('OMP_NUM_THREADS',) if k in os.environ)
    nice = f'nice -n {os.nice(0)} ' if hasattr(os, 'nice') and os.nice(0) else ''  # a lowered priority shows in the latencies: say so
    print(f'Command: `{nice}{(env + " ") if env else ""}python {" ".join(map(shlex.quote, ["bench/deploy.py"] + sys.argv[1:]))}`\n')
    dls = get_dls('digits', size=32, bs=64, n=n, device='cpu')
    lrs = ', '.join(f'{lr:g} for {k}' for k,(_,lr) in archs.items())
    print(f'Each network is trained with `fit_one_cycle({epochs}, lr)` (fastai Adam, batch 64, lr {lrs}) on the digits at 32 px ({len(dls.train_ds)} training images) twice from the same seed: '
          f'dense, and with `SparsifyCallback(50, "filter", end_pct=0.5)` + `CompactCallback()`. Files written by `learn.export_onnx` (int8: `quantize="int8"`, calibrated on '
          f'4 batches of the validation set); accuracy on the {len(dls.valid_ds)} validation images, run by onnxruntime.\n')
    rows,t0 = [],time.time()
    with tempfile.TemporaryDirectory() as d:
        for name,(factory,lr) in archs.items():
            rows += bench_arch(name, factory, lr, dls, epochs, args.threads, reps1, reps64, warm, Path(d))
            print(f'  {name}: done ({time.time()-t0:.0f} s)', file=sys.stderr, flush=True)
    print('| model | file | params | file MB | accuracy | top-1 agreement with compacted float32 | ms, batch 1 | speed-up | ms, batch 64 | speed-up |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        d = next(x for x in rows if x['model'] == r['model'] and x['version'] == 'dense')
        agree = f"{r['agree']:.1%} ({r['n_agree']} images)" if r['agree'] is not None else ''
        print(f"| {r['model']} | {r['version']} {r['fmt']} | {r['params']/1e6:.2f} M | {r['size']/2**20:.1f} | {r['acc']:.3f} | {agree} "
              f"| {r['ms1']*1e3:.2f} | {d['ms1']/r['ms1']:.2f}× | {r['ms64']*1e3:.1f} | {d['ms64']/r['ms64']:.2f}× |")
    print(f'\nLatency: medians of {reps1} (batch 1) and {reps64} (batch 64) runs after {warm} warm-up runs each, the three files of a network alternated run by run, '
          f'onnxruntime CPUExecutionProvider with {args.threads} intra-op thread{"s"*(args.threads>1)}; speed-ups against the dense float32 file. '
          f'Load average {os.getloadavg()[0]:.2f} at the end; total {time.time()-t0:.0f} s.')

if __name__ == '__main__': main()

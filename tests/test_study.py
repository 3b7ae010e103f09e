"The study runner: plans, checks before training, tiny real sweeps, resuming, failed runs, summaries, the paper preset on CIFAR-layout files, the command"
import contextlib, io, math, subprocess, sys, urllib.error, warnings
import numpy as np, pandas as pd, pytest, torch
import fastprune.study as study
from fastprune.study import *
from fastprune.data import datasets
from fastprune.learner import MissingWeightsError, check_weights
from fastprune.cli import main

TINY = dict(sparsities=[0, 50], seeds=[0, 1], epochs=1, size=16, n_per_class=5, n_valid=40, bs=16)

def same(a, b):
    "Two study tables equal but for wall time"
    pd.testing.assert_frame_equal(a.drop(columns='time'), b.drop(columns='time'), check_dtype=False)

@pytest.fixture
def no_download(monkeypatch, tmp_path):
    "An empty torch hub and no network: missing weights must fail, never download"
    def offline(url, *a, **k): raise urllib.error.URLError(f'no network in tests ({url})')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path/'torch'))
    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)

@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    "An uninterrupted tiny sweep: 2 arms x (dense, 50 %) x 2 seeds"
    out = tmp_path_factory.mktemp('ref')
    return out,run_study(out=out, bar=False, log=False, **TINY)

class Calls:
    "Wraps `train_run`, counting its calls, optionally failing on some"
    def __init__(self, fail=None, exc=RuntimeError('boom')): self.cfgs,self.fail,self.exc = [],fail,exc
    def __call__(self, cfg, *args, **kwargs):
        self.cfgs.append(cfg)
        if self.fail is not None and self.fail(len(self.cfgs), cfg): raise self.exc
        return self.real(cfg, *args, **kwargs)
    real = staticmethod(study.train_run)

# --- plans ---------------------------------------------------------------------------------------------

def test_default_plan():
    p = plan_study()
    assert len(p) == 4*2*3 and p == plan_study(**presets['default'])
    df = pd.DataFrame(p)
    assert sorted(df.sparsity.unique()) == [0, 80, 90, 95] and set(df.arm) == {'pretrained', 'scratch'} and set(df.seed) == {0, 1, 2}
    assert (df[df.sparsity > 0].granularity == 'weight').all() and df[df.sparsity == 0].granularity.isna().all()
    assert dict(df.groupby('arm').lr.first()) == presets['default']['lr'] == dict(pretrained=3e-3, scratch=1e-2)
    assert (df[df.sparsity > 0].end_pct == 0.5).all() and df.recal_bn.all()

def test_paper_preset_dry_run():
    p = plan_study(**presets['paper'])
    df = pd.DataFrame(p)
    # 4 data sets x 2 archs x 2 arms x 3 seeds x (dense once + 2 granularities x 6 sparsities): the 48 dense runs a full product would repeat per granularity run once
    assert len(p) == 4*2*2*3*(1 + 2*6) == 624
    assert len({run_key(c) for c in p}) == 624
    full = {(r.arch, r.dataset, r.arm, g, r.sparsity, r.seed) for r in df.itertuples() for g in (['weight', 'filter'] if r.sparsity == 0 else [r.granularity])}
    assert len(full) == 4*2*2*7*3*2
    assert set(df.dataset) == {'cifar10', 'cifar100', 'svhn', 'caltech101'} and set(df.arch) == {'vgg16', 'mobilenet_v2'}
    assert (df['size'] == 224).all() and (df.epochs == 30).all() and sorted(df.sparsity.unique()) == [0, 30, 50, 70, 80, 90, 95]

# --- bad input: nothing trains ----------------------------------------------------------------------------

BAD = [(dict(archs='resnet9000'), ValueError, "unknown arch 'resnet9000'"),
       (dict(datasets='imagenet'), ValueError, "unknown data set 'imagenet': choose one of"),
       (dict(arms=['pretrained', 'finetuned']), ValueError, "unknown arm 'finetuned': choose one of ['pretrained', 'scratch']"),
       (dict(sparsities=[0, 100.5]), ValueError, 'sparsity must be a number in [0, 100], got 100.5'),
       (dict(sparsities=[-1]), ValueError, 'sparsity must be a number in [0, 100], got -1'),
       (dict(sparsities=[True]), TypeError, 'sparsity must be a number'),
       (dict(sparsities=[]), ValueError, 'no sparsity given'),
       (dict(epochs=0), ValueError, 'epochs must be an int >= 1, got 0'),
       (dict(epochs=2.5), ValueError, 'epochs must be an int >= 1, got 2.5'),
       (dict(granularities='block'), ValueError, "unknown granularity 'block'"),
       (dict(contexts='layer'), ValueError, "unknown context 'layer': choose one of ['global', 'local']"),
       (dict(schedules='cubic'), ValueError, "unknown schedule 'cubic'"),
       (dict(schedules=print), TypeError, 'schedule must be given by name'),
       (dict(seeds=[-1]), ValueError, 'seed must be an int >= 0'),
       (dict(lr=-1e-3), ValueError, 'lr must be a number > 0'),
       (dict(lr=dict(pretrained=1e-3)), ValueError, "no rate for arm(s) ['scratch']"),
       (dict(lr=dict(pretrained=1e-3, scratch=1e-2, finetuned=1.)), ValueError, "unknown arm(s) ['finetuned']"),
       (dict(end_pct=0.), ValueError, 'start_pct < end_pct'),
       (dict(head='mine'), ValueError, "unknown head 'mine'"),
       (dict(n=100, n_per_class=10), ValueError, 'not both'),
       (dict(weights=dict(vgg16='x.pth')), ValueError, "weights given for ['vgg16']"),
       (dict(sparsities=[50, 90], distill=True), ValueError, "distill=True takes each pruned run's teacher from its dense run (sparsity 0)"),
       (dict(distill=[True, 'yes']), TypeError, "distill must be True or False, got str: 'yes'"),
       (dict(distill=True, distill_alpha=-0.1), ValueError, 'distill_alpha must be a number in [0, 1], got -0.1'),
       (dict(distill=True, distill_alpha=1.5), ValueError, 'distill_alpha must be a number in [0, 1], got 1.5'),
       (dict(distill=True, distill_T=0), ValueError, 'distill_T must be a temperature > 0, got 0')]

@pytest.mark.parametrize('kw,exc,msg', BAD, ids=[str(k) for k,_,_ in BAD])
def test_bad_input_fails_before_training(kw, exc, msg, tmp_path, monkeypatch):
    calls = Calls(fail=lambda i,c: True, exc=AssertionError('trained'))
    monkeypatch.setattr(study, 'train_run', calls)
    with pytest.raises(exc) as e: run_study(out=tmp_path, bar=False, log=False, **kw)
    assert msg in str(e.value), str(e.value)
    assert calls.cfgs == [] and not (tmp_path/'results.csv').exists()

def test_missing_root_and_data(tmp_path, monkeypatch):
    monkeypatch.setattr(study, 'train_run', Calls(fail=lambda i,c: True, exc=AssertionError('trained')))
    with pytest.raises(ValueError, match=f'root folder {tmp_path}/nowhere does not exist'): run_study(out=tmp_path, root=tmp_path/'nowhere', datasets='cifar10', bar=False)
    with pytest.raises(ValueError, match=f'nothing found at {tmp_path}/svhn'): run_study(out=tmp_path, root=tmp_path, datasets=['digits', 'svhn'], bar=False)

def test_missing_weights_offline(tmp_path, no_download, monkeypatch):
    monkeypatch.setattr(study, 'train_run', Calls(fail=lambda i,c: True, exc=AssertionError('trained')))
    with pytest.raises(MissingWeightsError, match=f'mobilenet_v2-b0353104.pth in {tmp_path}/torch/hub/checkpoints'): run_study(out=tmp_path, bar=False)
    with pytest.raises(MissingWeightsError, match='vgg16-397923af.pth'): run_study(out=tmp_path, archs='vgg16', bar=False)
    assert check_study(plan_study(arms='scratch', archs='vgg16')) == {'digits': 'packaged'}  # the scratch arm needs no weights
    with pytest.raises(MissingWeightsError, match='no weights file at'): check_weights('mobilenet_v2', tmp_path/'none.pth')

# --- tiny real runs ----------------------------------------------------------------------------------------

def test_tiny_sweep(ref):
    out,df = ref
    assert len(df) == 8 and df.error.isna().all() and df.weights.isna().all()
    assert {'results.csv', 'summary.csv', 'accuracy.png'} <= {f.name for f in out.iterdir()}
    pr = df[df.sparsity == 50]
    assert np.allclose(pr.measured_sparsity, 50, atol=0.01) and (pr.compression > 1).all() and (pr.speedup > 1).all()
    assert np.allclose(df[df.sparsity == 0].compression, 1, atol=1e-3) and df.accuracy.between(0, 100).all()
    assert (df.train_items == 50).all() and (df.valid_items == 40).all() and (df.time > 0).all()
    assert set(df.weights_from.dropna()) == {'MobileNet_V2_Weights.IMAGENET1K_V1'} and df[df.arm == 'scratch'].weights_from.isna().all()
    s = summarize(df)
    assert len(s) == 4 and (s.seeds == 2).all() and s.accuracy_std.notna().all()
    assert np.allclose(s[s.sparsity == 0].delta, 0)
    for arm in ('pretrained', 'scratch'):
        d = df[df.arm == arm]
        assert math.isclose(s[(s.arm == arm) & (s.sparsity == 50)].delta.item(), d[d.sparsity == 50].accuracy.mean() - d[d.sparsity == 0].accuracy.mean())
    lw = largest_within(df, tol=100)
    assert list(lw.arm) == ['pretrained', 'scratch'] and (lw.sparsity == 50).all()
    assert 'pretrained' in format_largest(df) and '±' in format_summary(df)

def test_resume_after_interrupt(ref, tmp_path, monkeypatch):
    _,full = ref
    stop = Calls(fail=lambda i,c: i == 4, exc=KeyboardInterrupt())
    monkeypatch.setattr(study, 'train_run', stop)
    with pytest.raises(KeyboardInterrupt): run_study(out=tmp_path, bar=False, log=False, **TINY)
    assert len(read_results(tmp_path/'results.csv')) == 3
    again = Calls()
    monkeypatch.setattr(study, 'train_run', again)
    df = run_study(out=tmp_path, bar=False, log=False, **TINY)
    assert [run_key(c) for c in again.cfgs] == [run_key(c) for c in plan_study(**TINY)[3:]]  # the 3 done runs are not trained again
    same(df, full)
    same(read_results(tmp_path/'results.csv'), full)
    nothing = Calls()
    monkeypatch.setattr(study, 'train_run', nothing)
    same(run_study(out=tmp_path, bar=False, log=False, **TINY), full)
    assert nothing.cfgs == []

def test_prefilled_csv_is_kept(ref, tmp_path, monkeypatch):
    "Rows already in results.csv are not trained again, whatever they hold; rows of other plans are kept"
    _,full = ref
    pre = full[full.seed == 0].assign(accuracy=12.5)
    other = full.iloc[[0]].assign(arch='resnet10t', accuracy=1.)
    pd.concat([other, pre]).to_csv(tmp_path/'results.csv', index=False)
    calls = Calls()
    monkeypatch.setattr(study, 'train_run', calls)
    df = run_study(out=tmp_path, bar=False, log=False, **TINY)
    assert {c['seed'] for c in calls.cfgs} == {1} and len(calls.cfgs) == 4
    assert (df[df.seed == 0].accuracy == 12.5).all() and len(df) == 8
    same(df[df.seed == 1].reset_index(drop=True), full[full.seed == 1].reset_index(drop=True))
    csv = read_results(tmp_path/'results.csv')
    assert len(csv) == 9 and csv.arch.iloc[-1] == 'resnet10t'  # the plan's rows first, in order, then the others

def test_failed_run_is_recorded_and_retried(ref, tmp_path, monkeypatch):
    _,full = ref
    boom = Calls(fail=lambda i,c: c['arm'] == 'scratch' and c['sparsity'] == 50 and c['seed'] == 0)
    monkeypatch.setattr(study, 'train_run', boom)
    with pytest.warns(UserWarning, match=r'1 run\(s\) failed'): df = run_study(out=tmp_path, bar=False, log=False, **TINY)
    assert len(boom.cfgs) == 8 and df.error.notna().sum() == 1
    bad = df[df.error.notna()].iloc[0]
    assert bad.error == 'RuntimeError: boom' and math.isnan(bad.accuracy) and (bad.arm, bad.sparsity, bad.seed) == ('scratch', 50, 0)
    same(df[df.error.isna()].drop(columns='error'), full[df.error.isna().values].drop(columns='error'))
    assert len(summarize(df)) == 4 and summarize(df).seeds.tolist() == [2, 2, 2, 1]  # the failed seed is left out
    keep = Calls()
    monkeypatch.setattr(study, 'train_run', keep)
    with pytest.warns(UserWarning): run_study(out=tmp_path, bar=False, log=False, retry_errors=False, **TINY)
    assert keep.cfgs == []
    retry = Calls()
    monkeypatch.setattr(study, 'train_run', retry)
    same(run_study(out=tmp_path, bar=False, log=False, **TINY), full)
    assert len(retry.cfgs) == 1

def test_crash_inside_a_real_run(tmp_path):
    "A setting that only fails once the model exists (an exclusion that matches no layer) fails its runs, not the sweep"
    with pytest.warns(UserWarning, match=r'2 run\(s\) failed'):
        df = run_study(out=tmp_path, bar=False, log=False, exclude='nothing.*', **dict(TINY, seeds=0))
    assert df.error.notna().tolist() == [False, True, False, True]
    assert df.error.dropna().str.contains("no layer matches 'nothing.*'").all()

# --- distillation: the dense run teaches ----------------------------------------------------------------------

DTINY = dict(TINY, seeds=0)

def test_distill_plan_and_old_results(ref, tmp_path):
    "Distillation is part of a run's key; a results.csv from before it existed reads as not distilled, and resumes"
    p = plan_study(**DTINY, distill=[False, True], distill_alpha=0.7, distill_T=2)
    df = pd.DataFrame(p)
    assert len(p) == 2*(1 + 2) and len({run_key(c) for c in p}) == 6 and df[df.sparsity == 0].distill_alpha.isna().all()
    assert sorted(df[df.sparsity > 0].distill_alpha.fillna(0)) == [0, 0, .7, .7] and set(df.distill_T.dropna()) == {2.}
    _,full = ref
    full.drop(columns=['distill_alpha', 'distill_T']).to_csv(tmp_path/'results.csv', index=False)  # written before distillation
    old = read_results(tmp_path/'results.csv')
    assert list(old.columns) == list(full.columns) and old.distill_alpha.isna().all()
    assert study_table(old, plan_study(**TINY)).shape == full.shape and len(summarize(old)) == 4

def test_distill_sweep_teacher_resume(tmp_path, monkeypatch):
    "Each pruned run learns from its own arm's dense run, whose saved weights are the teacher; a resume trains nothing, and a lost teacher is trained again"
    teachers,dense = {},{}
    class Spy(study.DistillCallback):
        def __init__(self, teacher, *args, **kwargs):
            teachers[len(teachers)] = {k: v.detach().cpu().clone() for k,v in teacher.state_dict().items()}
            super().__init__(teacher, *args, **kwargs)
    def keep(cfg, *args, **kwargs):
        r = Calls.real(cfg, *args, **kwargs)
        if 'state_dict' in r: dense[cfg['arm']] = r['state_dict']
        return r
    monkeypatch.setattr(study, 'DistillCallback', Spy)
    monkeypatch.setattr(study, 'train_run', keep)
    df = run_study(out=tmp_path, bar=False, log=False, plot=False, distill=[False, True], **DTINY)
    assert len(df) == 6 and df.error.isna().all() and df.distill_alpha.fillna(0).tolist() == [0, 0, .5]*2
    assert sorted(dense) == ['pretrained', 'scratch'] and len(teachers) == 2
    for i,arm in enumerate(('pretrained', 'scratch')):
        fn = run_weights(tmp_path, plan_study(**DTINY, arms=arm)[0])
        saved = torch.load(fn, weights_only=True)
        assert saved.keys() == dense[arm].keys() == teachers[i].keys()
        assert all(torch.equal(saved[k], dense[arm][k]) and torch.equal(saved[k], teachers[i][k]) for k in saved)
        d = df[df.arm == arm]
        assert d.loss.iloc[1] != d.loss.iloc[2]  # the distilled run is not its plain twin, which started from the same weights and batches
    assert sorted(p.name for p in (tmp_path/'weights').iterdir()) == sorted(run_weights(tmp_path, c).name for c in plan_study(**DTINY) if c['sparsity'] == 0)
    s = summarize(df)
    assert len(s) == 8 and s.distill_alpha.notna().sum() == 4 and 'distilled (alpha 0.5, T 4)' in format_largest(df)
    nothing = Calls()
    monkeypatch.setattr(study, 'train_run', nothing)
    same(run_study(out=tmp_path, bar=False, log=False, plot=False, distill=[False, True], **DTINY), df)
    assert nothing.cfgs == []
    # the scratch teacher's weights are lost and its distilled run must be redone: the dense run is trained again first, then the distilled one
    scratch = plan_study(**DTINY, arms='scratch', distill=True)
    run_weights(tmp_path, scratch[0]).unlink()
    csv = read_results(tmp_path/'results.csv')
    csv[[k != run_key(scratch[1]) for k in study._keys(csv)]].to_csv(tmp_path/'results.csv', index=False)
    again = Calls()
    monkeypatch.setattr(study, 'train_run', again)
    with contextlib.redirect_stdout(io.StringIO()) as o: df2 = run_study(out=tmp_path, bar=False, plot=False, distill=[False, True], **DTINY)
    assert [run_key(c) for c in again.cfgs] == [run_key(c) for c in scratch] and '1 dense run(s)' in o.getvalue()
    same(df2, df)  # the same numbers again, the teacher included
    assert run_weights(tmp_path, scratch[0]).is_file()

def test_distill_failed_teacher(tmp_path, monkeypatch):
    "A dense run that fails leaves no teacher: its distilled runs fail without training, and the next call retries both"
    boom = Calls(fail=lambda i,c: c['sparsity'] == 0)
    monkeypatch.setattr(study, 'train_run', boom)
    with pytest.warns(UserWarning, match=r'2 run\(s\) failed'): df = run_study(out=tmp_path, bar=False, log=False, plot=False, arms='scratch', distill=True, **DTINY)
    assert len(boom.cfgs) == 1 and df.error.tolist()[0] == 'RuntimeError: boom' and 'no teacher: its dense run left no weights' in df.error[1]
    with pytest.raises(ValueError, match="pass its dense run's trained weights as teacher"): study.train_run(plan_study(**DTINY, arms='scratch', distill=True)[1], bar=False)
    retry = Calls()
    monkeypatch.setattr(study, 'train_run', retry)
    df = run_study(out=tmp_path, bar=False, log=False, plot=False, arms='scratch', distill=True, **DTINY)
    assert len(retry.cfgs) == 2 and df.error.isna().all()

def test_cli_distill(tmp_path):
    rc,out,_ = run_main(['study', '--dry-run', '--out', str(tmp_path), '--distill', '--distill-T', '2'])
    assert rc == 0 and out.startswith('24 runs (6 dense baselines, 18 distilled from them)') and 'distill_T: 2.0' in out, out
    for args,msg in [(['--distill', '--sparsities', '50'], 'add 0 to the sparsities'), (['--distill-alpha', '0.3'], '--distill-alpha set how --distill distills'),
                     (['--distill', '--distill-alpha', '1.1'], 'distill_alpha must be a number in [0, 1], got 1.1')]:
        rc,_,err = run_main(['study', '--out', str(tmp_path)] + args)
        assert rc == 2 and msg in err, err
    assert list(tmp_path.iterdir()) == []

# --- summaries without training ------------------------------------------------------------------------------

def fake(rows):
    "A results table from (arm, granularity, sparsity, seed, accuracy) tuples"
    base = plan_study(granularities=['weight', 'filter'], sparsities=[0, 50, 80, 90], seeds=[0, 1])
    recs = []
    for arm,g,sp,seed,acc in rows:
        c = next(c for c in base if (c['arm'], c['granularity'] if sp else None, c['sparsity'], c['seed']) == (arm, g, sp, seed))
        recs.append(dict(c, accuracy=acc, measured_sparsity=sp, compression=100/(100-sp), speedup=1+sp/50, time=1., error=None))
    return pd.DataFrame(recs)

def test_summary_and_largest_within():
    rows = [('pretrained', None, 0, 0, 98.), ('pretrained', None, 0, 1, 96.)]
    rows += [('pretrained', 'weight', sp, s, a) for sp,a in ((50, 97.5), (80, 95.2), (90, 96.5)) for s in (0, 1)]
    rows += [('pretrained', 'filter', sp, s, a) for sp,a in ((50, 90.), (80, 50.), (90, 20.)) for s in (0, 1)]
    rows += [('scratch', None, 0, 0, 90.), ('scratch', None, 0, 1, 92.)]
    rows += [('scratch', 'weight', 50, s, 91.5) for s in (0, 1)] + [('scratch', 'weight', 80, 0, 80.), ('scratch', 'weight', 80, 1, float('nan'))]
    df = fake(rows)
    df.loc[df.accuracy.isna(), 'error'] = 'RuntimeError: boom'
    s = summarize(df)
    # the dense baseline heads every granularity of its arm
    assert s[['arm', 'granularity', 'sparsity']].values.tolist() == [['pretrained', g, sp] for g in ('weight', 'filter') for sp in (0, 50, 80, 90)] + [['scratch', 'weight', sp] for sp in (0, 50, 80)]
    pw = s[(s.arm == 'pretrained') & (s.granularity == 'weight')]
    assert pw.accuracy.tolist() == [97., 97.5, 95.2, 96.5] and np.allclose(pw.delta, [0, .5, -1.8, -.5])
    assert math.isclose(pw.accuracy_std.iloc[0], math.sqrt(2))
    sc = s[s.arm == 'scratch']
    assert sc.seeds.tolist() == [2, 2, 1] and np.allclose(sc.delta, [0, .5, -11])
    lw = largest_within(df, tol=1)
    # 90 % is within 1 point although 80 % is not: the largest qualifying sparsity wins
    assert lw[['arm', 'granularity', 'sparsity']].values.tolist() == [['pretrained', 'weight', 90], ['pretrained', 'filter', 0], ['scratch', 'weight', 50]]
    assert lw.dense_accuracy.tolist() == [97., 97., 91.]
    assert largest_within(df, tol=2).sparsity.tolist() == [90, 0, 50]
    with pytest.raises(ValueError, match='no successful run'): summarize(df.assign(error='x'))

def test_plot(tmp_path):
    df = fake([(a, g, sp, s, 90 - sp/10 + s) for a in ('pretrained', 'scratch') for s in (0, 1) for g,sp in ((None, 0), ('weight', 50), ('weight', 80))])
    fig = plot_study(df, tmp_path/'p.png')
    assert (tmp_path/'p.png').stat().st_size > 10_000
    ax1,ax2 = fig.axes
    assert [t.get_text() for t in ax1.get_legend().get_texts()] == ['pretrained', 'scratch']
    assert ax2.get_xscale() == 'log'

# --- the paper's pipeline on CIFAR-layout files ----------------------------------------------------------------

def test_paper_pipeline_on_tiny_cifar(tmp_path):
    root = tmp_path/'data'
    datasets['cifar10'].write_tiny(root, ('airplane', 'bird', 'cat'), n_train=4, n_valid=3)
    kw = dict(presets['paper'], archs='mobilenet_v2', datasets='cifar10', sparsities=[0, 50], seeds=0, epochs=1, size=32, bs=4)
    df = run_study(out=tmp_path/'out', root=root, bar=False, log=False, **kw)
    assert len(df) == 2*(1 + 2) and df.error.isna().all()
    assert df.granularity.fillna('dense').tolist() == ['dense', 'weight', 'filter']*2
    assert (df.train_items == 12).all() and (df.valid_items == 9).all() and (df['head'] == 'fastai').all() and (df[df.sparsity > 0].schedule == 'agp').all()
    pr = df[df.sparsity > 0]
    assert np.allclose(pr.measured_sparsity, 50, atol=1.5) and (pr.compression > 1).all()
    assert (pr.speedup > 1).all()
    assert len(summarize(df)) == 2*2*2

# --- the command ---------------------------------------------------------------------------------------------------

def run_main(args):
    with contextlib.redirect_stdout(io.StringIO()) as o, contextlib.redirect_stderr(io.StringIO()) as e:
        try: rc = main(args)
        except SystemExit as x: rc = x.code
    return rc,o.getvalue(),e.getvalue()

def test_cli_dry_run(tmp_path):
    rc,out,_ = run_main(['study', '--dry-run', '--out', str(tmp_path)])
    assert rc == 0 and out.startswith('24 runs (6 dense baselines), 144 epochs in all; 0 already in') and 'found digits: packaged' in out
    rc,out,_ = run_main(['study', '--dry-run', '--preset', 'paper', '--root', str(tmp_path), '--out', str(tmp_path)])
    assert rc == 1 and out.startswith('624 runs') and 'not ready to run: cifar10' in out
    rc,out,_ = run_main(['study', '--dry-run', '--sparsities', '0', '30', '--seeds', '0,1,2', '--granularity', 'weight,filter', '--exclude', 'none', '--lr', '1e-3'])
    assert rc == 0 and out.startswith(f'{3*2*(1 + 2)} runs') and 'exclude: -' in out and 'lr: 0.001' in out

def test_cli_bad_input():
    for args,msg in [(['--sparsities', '0,120'], '[0, 100], got 120'), (['--datasets', 'nope'], "unknown data set 'nope'"),
                     (['--epochs', '0'], 'epochs must be an int >= 1'), (['--lr', 'x'], 'expected a number'), (['--arms', 'both'], "unknown arm 'both'")]:
        rc,_,err = run_main(['study'] + args)
        assert rc == 2 and msg in err, err

def test_cli_tiny_study(tmp_path):
    args = ['study', '--out', str(tmp_path), '--sparsities', '0,50', '--seeds', '0', '--epochs', '1', '--size', '16', '--n-per-class', '5', '--n-valid', '40', '--bs', '16', '--no-bar']
    rc,out,_ = run_main(args)
    assert rc == 0 and 'Largest sparsity within 1 point(s) of dense accuracy' in out and f'plot: {tmp_path}/accuracy.png' in out
    assert (tmp_path/'accuracy.png').is_file() and len(read_results(tmp_path/'results.csv')) == 4

# --- statistics: intervals from the per-image correctness ----------------------------------------------------------

def with_hits(p, n=400, seeds=(0, 1, 2), sparsities=(0, 50, 90)):
    "A results table whose runs get correctness vectors: `p(arm, sparsity, seed, rng)` gives each run's bools on the seed's `n` images"
    recs = []
    for c in plan_study(sparsities=list(sparsities), seeds=list(seeds)):
        hit = p(c['arm'], c['sparsity'], c['seed'], np.random.default_rng(c['seed']))
        recs.append(dict(c, accuracy=100*hit.mean(), measured_sparsity=c['sparsity'], compression=100/(100-c['sparsity']), speedup=1+c['sparsity']/50,
                         valid_items=n, time=1., correct=study.pack_correct(hit), error=None))
    return pd.DataFrame(recs)

def test_pack_correct():
    hit = np.random.default_rng(0).random(1001) < 0.7
    s = study.pack_correct(hit)
    assert len(s) == 4*math.ceil(math.ceil(1001/8)/3) and (study.unpack_correct(s, 1001) == hit).all()

def test_effect_reproduced_only_where_the_interval_excludes_0():
    def p(arm, sp, seed, rng):
        base = rng.random(400) < 0.95  # the seed's images: the same draw for every run of the seed
        if sp == 90 and arm == 'scratch': base = base & (rng.random(400) > 0.15)  # scratch loses ~14 points at 90 %, pretrained nothing
        return base
    df = with_hits(p)
    e = arm_difference(df).set_index('sparsity')
    assert (e.lo[50], e.hi[50], e.difference[50]) == (0, 0, 0)  # identical runs: every replicate says 0
    assert 8 < e.lo[90] < e.difference[90] < e.hi[90] < 20 and (e.seeds == 3).all() and (e.resampled == 'paired').all()
    txt = format_effect(df)
    assert 'reproduced at 90 % (interval above 0); not shown at 50 % (interval contains 0). 95 % bootstrap over 3 seeds and validation images, paired.' in txt, txt
    lw = largest_within(df).set_index('arm')
    assert lw.sparsity.to_dict() == dict(pretrained=90, scratch=50)
    assert (lw.sparsity_lo['pretrained'], lw.sparsity_hi['pretrained']) == (90, 90) and (lw.sparsity_lo['scratch'], lw.sparsity_hi['scratch']) == (50, 50)
    assert '90 % sparsity (95 % interval 90 to 90 %, 3 seeds)' in format_largest(df)

def test_effect_reversed_and_unpaired():
    def p(arm, sp, seed, rng):
        base = rng.random(400) < 0.9
        return base & (rng.random(400) > (0.2 if arm == 'pretrained' and sp == 90 else 0))
    df = with_hits(p)
    assert 'reproduced at no sparsity; not shown at 50 % (interval contains 0); reversed at 90 % (scratch loses less: interval below 0)' in format_effect(df)
    paired = arm_difference(df).set_index('sparsity')
    unpaired = arm_difference(df.drop(columns='correct')).set_index('sparsity')  # a results.csv from before the correctness vectors
    assert (unpaired.resampled == 'unpaired').all() and np.allclose(unpaired.difference, paired.difference)
    assert (unpaired.hi - unpaired.lo)[50] > 1 and (unpaired.hi - unpaired.lo)[90] > (paired.hi - paired.lo)[90]  # without the pairing, wider
    assert 'unpaired (these results hold no per-image correctness)' in format_effect(df.drop(columns='correct'))

def test_one_arm_has_no_effect_line():
    df = with_hits(lambda arm, sp, seed, rng: rng.random(400) < 0.9)
    assert len(arm_difference(df[df.arm == 'scratch'])) == 0 and 'nothing to compare' in format_effect(df[df.arm == 'scratch'])
    assert largest_within(df[df.arm == 'scratch']).seeds.tolist() == [3]

# --- logs a person can read -------------------------------------------------------------------------------------------

def test_cli_log_to_a_pipe(tmp_path):
    "With stdout a pipe, the bar is off: one line per run, no carriage returns, no per-epoch table"
    cmd = [sys.executable, '-c', 'import sys; from fastprune.cli import main; sys.exit(main())', 'study', '--out', str(tmp_path), '--sparsities', '0,50',
           '--seeds', '0', '--epochs', '1', '--size', '16', '--n-per-class', '5', '--n-valid', '40', '--bs', '16', '--no-plot']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert '\r' not in p.stdout and 'train_loss' not in p.stdout, p.stdout
    runs = [l for l in p.stdout.splitlines() if l.startswith('[')]
    assert [l[:5] for l in runs] == ['[1/4]', '[2/4]', '[3/4]', '[4/4]'] and all('accuracy' in l for l in runs)
    assert 'Pretrained against scratch' in p.stdout and 'bootstrap over 1 seed and validation images, paired' in p.stdout

def test_precision_needs_cuda(tmp_path):
    if torch.cuda.is_available(): pytest.skip('CUDA is here: mixed precision is allowed')
    for prec in ('bf16', 'fp16'):
        with pytest.raises(ValueError, match=f"precision '{prec}' needs a CUDA device"): run_study(out=tmp_path, precision=prec, **TINY)
    with pytest.raises(ValueError, match="unknown precision 'fp64'"): run_study(out=tmp_path, precision='fp64', **TINY)
    assert not (tmp_path/'results.csv').exists()

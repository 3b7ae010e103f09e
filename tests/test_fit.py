"End-to-end fits with SparsifyCallback on scikit-learn's digits with real timm networks"
import math, torch, pytest
from fastai.callback.core import Callback, CancelFitException
from fastprune.all import *
from fastprune.report import report_summary
from conftest import make_learner, assert_exact as _exact

def _quiet(learn): return learn.no_bar()

def test_fit_one_cycle_defaults_reach_target_exactly():
    learn = make_learner()
    with _quiet(learn): learn.fit_one_cycle(2, 3e-3, cbs=SparsifyCallback(sparsity=80))
    sp = learn.sparsifier
    assert all(isinstance(l.module, torch.nn.Conv2d) for l in sp.layers) and len(sp.layers) == 14
    _exact(sp, 80)
    assert abs(sp.sparsity() - 80) < 1e-3
    # the measured sparsity was a column of the results table, and is gone from the metrics afterwards
    assert 'sparsity' in learn.recorder.metric_names
    col = learn.recorder.metric_names.index('sparsity') - 1
    assert abs(learn.recorder.values[-1][col] - sp.sparsity()) < 1e-6
    assert learn.recorder.values[0][col] < learn.recorder.values[-1][col]
    assert not any(type(m).__name__ == '_SparsityMetric' for m in learn.metrics)

@pytest.mark.parametrize('method', ['fit', 'fine_tune'])
def test_fit_and_fine_tune(method):
    learn = make_learner()
    cb = SparsifyCallback(sparsity=60, granularity='kernel')
    with _quiet(learn):
        if method == 'fit': learn.fit(1, 1e-3, cbs=cb)
        else: learn.fine_tune(1, 1e-3, freeze_epochs=1, cbs=cb)
    _exact(learn.sparsifier, 60)

def test_second_fit_goes_on_from_masks_and_validate_works():
    learn = make_learner()
    cb = SparsifyCallback(sparsity=50)
    with _quiet(learn): learn.fit_one_cycle(1, 3e-3, cbs=cb)
    before = [(~l.mask).clone() for l in learn.sparsifier.layers]
    sp_obj = learn.sparsifier
    with _quiet(learn): learn.fit_one_cycle(1, 1e-3, cbs=cb)
    assert learn.sparsifier is sp_obj
    for b,l in zip(before, learn.sparsifier.layers): assert torch.equal(b, ~l.mask)  # same target: nothing moves
    learn.validate()
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(sparsity=75))
    for b,l in zip(before, learn.sparsifier.layers): assert not (b & l.mask.flatten().view_as(b)).any()
    _exact(learn.sparsifier, 75)

class _StopAfter(Callback):
    order = 100
    def __init__(self, epoch): self.stop_epoch = epoch
    def after_epoch(self):
        if self.epoch+1 == self.stop_epoch: raise CancelFitException()

def test_save_load_resume_continues_schedule(tmp_path):
    n_epoch = 4
    learn = make_learner(path=tmp_path)
    with _quiet(learn): learn.fit_one_cycle(n_epoch, 3e-3, cbs=[SparsifyCallback(80, schedule='linear'), _StopAfter(2)])
    mid = learn.sparsifier.sparsity()
    assert 30 < mid < 50  # halfway along a linear ramp to 80
    learn.save('half', with_opt=True)
    masks = [l.mask.clone() for l in learn.sparsifier.layers]

    learn2 = make_learner(path=tmp_path, seed=1)
    learn2.load('half', with_opt=True)
    cb = SparsifyCallback(80, schedule='linear')
    with _quiet(learn2): learn2.fit_one_cycle(n_epoch, 3e-3, cbs=cb, start_epoch=2)
    sp = learn2.sparsifier
    # the fresh callback found the masks in the loaded weights, kept them, and carried the ramp to its end
    for m,l in zip(masks, sp.layers): assert not (~m & l.mask).any()
    _exact(sp, 80)
    col = learn2.recorder.metric_names.index('sparsity') - 1
    third = learn2.recorder.values[2][col]  # skipped epochs log no values
    assert abs(third - 60) < 0.5, third

def test_global_filter_counts_parameters():
    learn = make_learner()
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(50, 'filter', 'global'))
    sp = learn.sparsifier
    removed = sum(l.n_pruned*l.group_size for l in sp.layers)
    assert abs(removed - 0.5*sp.n_params) <= max(sp.layers.attrgot('group_size'))
    assert all(l.n_pruned < l.n_groups for l in sp.layers)
    assert abs(sp.sparsity() - 50) < 100*max(sp.layers.attrgot('group_size'))/sp.n_params

@pytest.mark.parametrize('crit', ['random', 'large_init', 'movement', 'taylor'])
def test_every_criterion_trains(crit):
    learn = make_learner(n_train=256)
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(70, criteria=crit, schedule='agp'))
    _exact(learn.sparsifier, 70)
    kept_init = [l.init is not None for l in learn.sparsifier.layers]
    assert all(kept_init) if crit in ('large_init', 'movement') else not any(kept_init)

@pytest.mark.parametrize('sched', ['one_shot', 'iterative', 'agp', 'one_cycle', 'linear', 'cos'])
def test_every_schedule_ends_on_target(sched):
    learn = make_learner(n_train=256)
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(65, schedule=sched, start_pct=0.2, end_pct=0.8))
    _exact(learn.sparsifier, 65)

def test_dsd_regrows_from_zero_and_ends_dense():
    learn = make_learner(n_train=256)
    seen = []
    class Watch(Callback):
        order = 50
        def after_step(self): seen.append(self.learn.sparsifier.sparsity())
    with _quiet(learn): learn.fit(2, 1e-3, cbs=[SparsifyCallback(80, schedule='dsd'), Watch()])
    assert max(seen) > 75
    # every mask is lifted; regrown weights restart from zero, so those with a gradient have moved since
    assert all(l.mask is None for l in learn.sparsifier.layers)
    assert seen[-1] < max(seen) - 10

def test_user_schedule_and_fastai_schedule():
    from fastai.callback.schedule import sched_cos
    learn = make_learner(n_train=256)
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(40, schedule=lambda s,e,p: s + (e-s)*p**2))
    _exact(learn.sparsifier, 40)
    learn = make_learner(n_train=256)
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(40, schedule=sched_cos))
    _exact(learn.sparsifier, 40)

def test_update_every_regrades_without_changing_counts():
    learn = make_learner(n_train=256)
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(50, criteria='movement', schedule='one_shot', update_every=2, end_pct=0.75))
    # re-ranking swaps groups at a constant count; revived weights restart from zero, and a revived filter
    # whose ReLU channel was dead gets no gradient, so it may still be zero: only the mask counts are exact
    _exact(learn.sparsifier, 50, zeros_match=False)

def test_sparsity_dict_and_linear_layers():
    learn = make_learner(n_train=256)
    cb = SparsifyCallback({'layer4.*': 90, 'fc': 50}, 'filter', layer_type=(torch.nn.Conv2d, torch.nn.Linear))
    with _quiet(learn): learn.fit(1, 1e-3, cbs=cb)
    sp = learn.sparsifier
    for l,s in zip(sp.layers, sp.layer_sparsity()):
        want = 90 if l.name.startswith('layer4') else 50 if l.name == 'fc' else 0
        assert abs(s - want) <= 100/l.n_groups, (l.name, s)

def test_report_and_plot():
    import matplotlib; matplotlib.use('Agg')
    learn = make_learner(n_train=256)
    with _quiet(learn): learn.fit(1, 1e-3, cbs=SparsifyCallback(80))
    df = learn.sparsity_report()
    assert list(df.columns[:7]) == ['layer', 'type', 'shape', 'selected', 'params', 'nonzero', 'sparsity']
    assert abs(df.iloc[-2].sparsity - 80) < 1e-3
    s = report_summary(df)
    assert s['compression'] > 4 and 3 < s['speedup'] < 6
    learn.plot_sparsity()

"Layer sensitivity: one layer pruned at a time, the model back bit for bit, and per-layer budgets that meet their target"
import copy, math, pytest, torch
import pandas as pd
from torch import nn
from fastai.callback.core import Callback
from fastai.metrics import AvgMetric
from fastprune.all import *
from fastprune.sensitivity import sensitivity, allocate, plot_sensitivity
from conftest import make_learner, small_convnet

@pytest.fixture(scope='module')
def trained():
    "A small conv net with BatchNorm, trained one epoch on the digits: its BatchNorm buffers are its own"
    learn = make_learner(small_convnet(), n_train=256, n_valid=128)
    with learn.no_bar(): learn.fit(1, 1e-2)
    return learn

def state(model): return {k: v.clone() for k,v in model.state_dict().items()}
def same(model, sd): return all(torch.equal(v, sd[k]) and v.dtype == sd[k].dtype for k,v in model.state_dict().items())

@pytest.mark.parametrize('gran', ['weight', 'filter'])
def test_the_model_comes_back_bit_identical_buffers_and_modes_included(trained, gran):
    m = trained.model
    with torch.no_grad(): m[0].weight[0, 0, 0, 0] = -0.  # a negative zero keeps its sign
    m.train()
    sd,params = state(m),list(m.parameters())
    with trained.no_bar(): df = sensitivity(trained, (50, 90), gran, n_batches=1)
    assert same(m, sd) and torch.signbit(m[0].weight[0, 0, 0, 0])
    assert all(a is b for a,b in zip(params, m.parameters())) and m.training and all(x.training for x in m.modules())
    assert len(df) == 2*2 and set(df.layer) == {'0', '3'}

def test_each_row_is_the_layer_pruned_alone(trained):
    with trained.no_bar(): df = sensitivity(trained, (0, 70), layers='3')
    d = df.attrs['dense']
    r0,r = df.iloc[0],df.iloc[1]
    assert r0.sparsity == 0 and r0.loss == d['loss'] and r0.delta_loss == 0
    ref = copy.deepcopy(trained.model)
    Sparsifier(ref, layers='3').prune(70)
    learn2 = make_learner(ref, n_train=256, n_valid=128)
    with learn2.no_bar(): loss,acc = learn2.validate()
    assert math.isclose(r.loss, loss, rel_tol=1e-6) and math.isclose(r.accuracy, acc, rel_tol=1e-6)
    assert math.isclose(r.delta_loss, loss - d['loss'], rel_tol=1e-6) and math.isclose(r.delta_accuracy, acc - d['accuracy'], abs_tol=1e-9)
    assert r.reached == 100*round(0.7*r.groups)/r.groups and r.params == 16*8*9

class CountValid(Callback):
    "Validation batches seen"
    n = 0
    def after_batch(self):
        if not self.training: self.n += 1

def test_n_batches_bounds_the_cost(trained):
    cnt = CountValid()
    trained.add_cb(cnt)
    try:
        cnt.n = 0
        with trained.no_bar(): df = sensitivity(trained, (50, 90), n_batches=1)
    finally: trained.remove_cb(cnt)
    assert cnt.n == 1 + len(df) == 5  # the dense pass, then one per (layer, sparsity), each of one batch

class Boom(Exception): pass

def test_an_error_midway_leaves_the_model_as_it_was(trained):
    sd,calls = state(trained.model),[0]
    def acc_then_fail(inp, targ):
        calls[0] += 1
        if calls[0] > 3: raise Boom('the fourth batch')
        return (inp.argmax(-1) == targ).float().mean()
    old,trained.metrics = trained.metrics,[AvgMetric(acc_then_fail)]
    try:
        with pytest.raises(Boom), trained.no_bar(): sensitivity(trained, (50, 90), n_batches=1)
    finally: trained.metrics = old
    assert same(trained.model, sd)

@pytest.mark.parametrize('bad,err,msg', [(dict(sparsities=(50, 100)), ValueError, r'\[0, 100\)'), (dict(sparsities=(-1,)), ValueError, r'\[0, 100\)'),
    (dict(sparsities='50'), TypeError, 'percentage'), (dict(sparsities=()), ValueError, 'empty'), (dict(layers='head'), ValueError, "no layer matches 'head'"),
    (dict(n_batches=0), ValueError, 'n_batches'), (dict(criteria='taylor'), ValueError, 'needs none'), (dict(granularity='2:4', sparsities=90), ValueError, 'at most 50')])
def test_bad_input_fails_before_anything_changes(trained, bad, err, msg):
    sd = state(trained.model)
    with pytest.raises(err, match=msg), trained.no_bar(): sensitivity(trained, **bad)
    assert same(trained.model, sd)

def table(rows):
    "A `sensitivity` table from (layer, params, groups, {sparsity: delta_loss})"
    return pd.DataFrame([dict(layer=n, params=p, groups=g, sparsity=s, delta_loss=d) for n,p,g,c in rows for s,d in c.items()])

DF = table([('a', 1000, 1000, {50: 0.01, 90: 0.05, 95: 0.2}),  # insensitive
            ('b', 300, 30, {50: 0.5, 90: 2., 95: 3.}),  # sensitive, in groups of 10
            ('c', 50, 50, {50: 0.3, 90: 0.1, 95: 4.}),  # the loss falls at 90 %: it counts as the highest before
            ('d', 2000, 200, {50: 0.02, 90: 0.3, 95: 0.8})])

@pytest.mark.parametrize('target', [0, 10, 37.3, 60, 80, 90, 93])
def test_allocate_meets_the_target_within_one_group(target):
    a = allocate(DF, target)
    g = DF.groupby('layer').first()
    pruned = sum(round(a[n]/100*g.groups[n])*g.params[n]/g.groups[n] for n in a)
    assert abs(pruned - target/100*g.params.sum()) <= (g.params/g.groups).max()/2 + 1e-6
    assert all(0 <= v <= 95 and abs(v/100*g.groups[n] - round(v/100*g.groups[n])) < 1e-9 for n,v in a.items())  # whole groups

def test_allocate_prunes_the_least_sensitive_layers_first_and_grows_with_the_target():
    prev = None
    for t in (20, 50, 80, 90):
        a = allocate(DF, t)
        assert a['a'] >= a['d'] >= a['b'] and a['a'] >= a['c']
        if prev: assert all(a[k] >= prev[k] - 100/DF[DF.layer == k].groups.iloc[0] for k in a)
        prev = a

def test_allocate_reaches_its_limit_and_says_so_beyond():
    allocate(DF, 94.5)
    with pytest.raises(ValueError, match=r'at most 94\.\d\d % .*95 %'): allocate(DF, 96)
    with pytest.raises(ValueError, match=r'\[0, 100\)'): allocate(DF, 100)
    with pytest.raises(ValueError, match="lacks the columns"): allocate(DF.drop(columns='groups'), 50)

def test_allocation_feeds_the_callback_and_the_masks_reach_it(trained):
    with trained.no_bar(): df = sensitivity(trained, (50, 80, 95), n_batches=1)
    a = allocate(df, 85)
    learn = make_learner(copy.deepcopy(trained.model), n_train=128)
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=SparsifyCallback(a))
    sp = learn.sparsifier
    assert abs(sp.sparsity() - 85) <= 100/sp.n_params
    assert [round(t, 6) for t in sp.reached()] == [round(a[l.name], 6) for l in sp.layers]

def test_plot_sensitivity_draws_layers_by_sparsity(trained):
    import matplotlib; matplotlib.use('Agg')
    with trained.no_bar(): df = sensitivity(trained, (50, 90), n_batches=1)
    ax = plot_sensitivity(df)
    assert ax.images[0].get_array().shape == (2, 2)
    with pytest.raises(ValueError, match='unknown column'): plot_sensitivity(df, 'nope')

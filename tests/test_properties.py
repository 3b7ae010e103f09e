"Hypothesis: exactness of the masks and nothing outside the mask changes, over granularity x layer shape x sparsity x context"
import math, pytest, torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck
from fastprune.all import *
from fastprune.schedules import schedules

def _round(x): return math.floor(x + 0.5)

layer_st = st.one_of(
    st.tuples(st.just('conv'), st.integers(1, 9), st.integers(1, 6), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just('linear'), st.integers(1, 12), st.integers(1, 12), st.just(1), st.just(1)))

def _model(specs, seed):
    torch.manual_seed(seed)
    return nn.ModuleList([nn.Conv2d(i, o, (kh, kw)) if t == 'conv' else nn.Linear(i, o) for t,o,i,kh,kw in specs])

@pytest.mark.filterwarnings("ignore:sparsity=")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(layer_st, min_size=1, max_size=4), gran=st.sampled_from(['weight', 'vector', 'kernel', 'filter', 'channel']),
       sparsity=st.floats(0, 100), context=st.sampled_from(['local', 'global']), crit=st.sampled_from(['large_final', 'random']),
       seed=st.integers(0, 2**16), allow_empty=st.booleans())
def test_exact_and_untouched(specs, gran, sparsity, context, crit, seed, allow_empty):
    m = _model(specs, seed)
    g = get_granularity(gran)
    if not all(g.fits(l) for l in m):  # a granularity that does not fit raises, naming the layer
        try: Sparsifier(m, gran, context, crit, layer_type=(nn.Conv2d, nn.Linear)); raise AssertionError('should have raised')
        except ValueError as e: assert 'does not fit layer' in str(e)
        return
    before = [l.weight.detach().clone() for l in m]
    sp = Sparsifier(m, gran, context, crit, layer_type=(nn.Conv2d, nn.Linear), allow_empty=allow_empty).prune(sparsity)
    for l,w0 in zip(sp.layers, before):
        keep = torch.ones(l.gshape, dtype=torch.bool) if l.mask is None else l.mask
        full = keep.expand(l.shape)
        assert torch.equal(l.weight[full], w0[full])          # nothing outside the mask changes
        assert (l.weight[~full] == 0).all()                   # everything inside it is zero
        if not allow_empty: assert l.n_pruned < l.n_groups    # no layer is emptied
    if context == 'local':
        for l in sp.layers:
            k = _round(sparsity/100*l.n_groups)
            assert l.n_pruned == (k if allow_empty else min(k, l.n_groups-1))
    else:
        target = _round(sparsity/100*sp.n_params)
        removed = sum(l.n_pruned*l.group_size for l in sp.layers)
        prunable = sp.n_params - (0 if allow_empty else sum(l.group_size for l in sp.layers))
        biggest = max(l.group_size for l in sp.layers)
        assert abs(removed - min(target, prunable)) <= biggest, (removed, target, prunable)

@pytest.mark.filterwarnings("ignore:sparsity=")
@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.floats(0, 100), min_size=2, max_size=6), gran=st.sampled_from(['weight', 'kernel', 'filter']),
       context=st.sampled_from(['local', 'global']), seed=st.integers(0, 1000))
def test_rising_targets_never_revive(steps, gran, context, seed):
    m = _model([('conv', 6, 4, 3, 3), ('conv', 5, 6, 3, 3)], seed)
    sp = Sparsifier(m, gran, context, 'random', seed=seed)
    prev = None
    for s in sorted(steps):
        sp.prune(s)
        now = [torch.ones(l.gshape, dtype=torch.bool) if l.mask is None else l.mask for l in sp.layers]
        if prev is not None:
            for a,b in zip(prev, now): assert not (~a & b).any()  # once pruned, pruned for good while the target rises
        prev = [x.clone() for x in now]

# The callback in a real fastai fit: it changes kept weights only through the optimizer, and lands on its target exactly
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam, SGD
from functools import partial
from torch.utils.data import TensorDataset

class _Before(Callback):
    "The weights each event of the callback starts from"
    order = SparsifyCallback.order-1
    def before_step(self): self.w = [p.detach().clone() for p in self.learn.model.parameters()]
    def after_step(self): self.w = [p.detach().clone() for p in self.learn.model.parameters()]  # as the optimizer left them
    def after_fit(self): self.w = [p.detach().clone() for p in self.learn.model.parameters()]

class _After(Callback):
    "Every weight the masks keep is as `_Before` saw it; every weight they prune is zero"
    order = SparsifyCallback.order+1
    def __init__(self, before): self.before,self.n = before,0
    def _check(self):
        sp = self.learn.sparsifier
        keep = {}
        for l in sp.layers:
            if l.mask is None: continue
            keep[l.weight] = l.mask.expand(l.shape)
            for t in l.partners: keep[t] = l.mask.view(-1)
        for p,w in zip(self.learn.model.parameters(), self.before.w):
            k = keep.get(p, torch.ones_like(p, dtype=torch.bool))
            assert torch.equal(p[k], w[k]) and (p[~k] == 0).all()
        self.n += 1
    def before_step(self): self._check()
    def after_step(self): self._check()
    def after_fit(self): self._check()

@pytest.mark.filterwarnings("ignore:sparsity=")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.tuples(st.integers(1, 6), st.integers(1, 6)), k=st.integers(1, 3), gran=st.sampled_from(['weight', 'vector', 'kernel', 'filter', 'channel']),
       context=st.sampled_from(['local', 'global']), crit=st.sampled_from(['large_final', 'random', 'movement', 'taylor']),
       sched=st.sampled_from(sorted(schedules)), sparsity=st.floats(0, 100), min_delta=st.sampled_from([0., 5.]),
       update_every=st.sampled_from([None, 1, 3]), window=st.tuples(st.floats(0, 0.5), st.floats(0.5, 1)).filter(lambda w: w[0] < w[1]),
       allow_empty=st.booleans(), opt=st.sampled_from(['adam', 'sgd']), seed=st.integers(0, 1000))
def test_callback_changes_kept_weights_only_through_the_optimizer(c, k, gran, context, crit, sched, sparsity, min_delta, update_every, window, allow_empty, opt, seed):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, c[0], k, padding=1), nn.BatchNorm2d(c[0]), nn.ReLU(), nn.Conv2d(c[0], c[1], k), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[1], 4))
    x,y = torch.randn(48, 3, 6, 6),torch.randint(0, 4, (48,))
    dls = DataLoaders.from_dsets(TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:]), bs=8, device='cpu')
    learn = Learner(dls, m, loss_func=CrossEntropyLossFlat(), opt_func=Adam if opt == 'adam' else partial(SGD, mom=0.9, wd=1e-2))
    before = _Before()
    after = _After(before)
    cb = SparsifyCallback(sparsity, gran, context, crit, sched, start_pct=window[0], end_pct=window[1], min_delta=min_delta,
                          update_every=update_every, allow_empty=allow_empty, seed=seed)
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 1e-2, cbs=[before, cb, after])
    assert after.n == 2*4*2 + 1
    # exact: the counts of pruned groups are those of the schedule's final value
    sp,end = learn.sparsifier,get_schedule(sched)(0., float(sparsity), 1.)
    if context == 'local':
        for l in sp.layers:
            n = _round(end/100*l.n_groups)
            assert l.n_pruned == (n if allow_empty else min(n, l.n_groups-1)), (l, end)
    else:
        removed = sum(l.n_pruned*l.group_size for l in sp.layers)
        prunable = sp.n_params - (0 if allow_empty else sum(l.group_size for l in sp.layers))
        assert abs(removed - min(_round(end/100*sp.n_params), prunable)) <= max(l.group_size for l in sp.layers)

"Hypothesis: exactness of the masks and nothing outside the mask changes, over granularity x layer shape x sparsity x context"
import math, pytest, torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck
from fastprune.all import *

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

"`learn.export` / `load_learner` with the callback attached or removed; every registry object in a callback pickles; stripped models load strictly"
import copy, pickle, pytest, torch
from torch import nn
from torch.utils.data import TensorDataset
from fastai.data.core import DataLoaders
from fastai.learner import load_learner
from fastprune.all import *
from fastprune.criteria import criteria
from fastprune.granularity import granularities
from fastprune.schedules import schedules
from conftest import make_learner, small_convnet, digits_dls

pytestmark = pytest.mark.filterwarnings('ignore:load_learner')  # fastai's notice that it unpickles

def _excl(gran):
    "The layers of `small_convnet` that `gran` does not fit (2:4 needs inputs in fours)"
    return [str(i) for i,m in enumerate(small_convnet()) if isinstance(m, nn.Conv2d) and not get_granularity(gran).fits(m)] or None

def _fitted(path, sparsity=60, **kw):
    learn = make_learner(small_convnet(), path=path, n_train=128, n_valid=128)
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=SparsifyCallback(sparsity, **kw))
    return learn

def _out(m, x):
    m.eval()
    with torch.no_grad(): return m(x)

def _same_masks(a, b):
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    for la,lb in zip(a.layers, b.layers): assert torch.equal(la.mask, lb.mask), la.name

def test_export_with_callback_attached(tmp_path):
    learn = _fitted(tmp_path, granularity='filter', lth=True, reset_end=True)
    assert not any(isinstance(c, SparsifyCallback) for c in learn.cbs)  # a fit's callbacks leave with it: attach one to keep it
    cb = SparsifyCallback(80, 'filter', lth=True, reset_end=True)
    learn.add_cb(cb)
    with learn.no_bar(): learn.fit(1, 1e-2)
    assert cb._rewind is not None
    learn.export('attached.pkl')
    learn2 = load_learner(tmp_path/'attached.pkl')
    cb2 = next(c for c in learn2.cbs if isinstance(c, SparsifyCallback))
    assert cb2.learn is learn2 and cb2.sparsifier.model is learn2.model and learn2.sparsifier is cb2.sparsifier
    assert cb2.__dict__.get('_rewind') is None  # a copy of every weight is not exported
    _same_masks(cb2.sparsifier, cb.sparsifier)
    x = learn.dls.valid.one_batch()[0]
    assert torch.equal(_out(learn2.model, x), _out(learn.model, x))
    # it goes on training: the masks hold, and the attached callback works as before
    learn2.dls = learn.dls
    with learn2.no_bar(): learn2.fit(1, 1e-2)
    for l,m in zip(cb2.sparsifier.layers, cb.sparsifier.layers): assert torch.equal(l.mask, m.mask)
    assert abs(learn2.sparsifier.sparsity() - learn.sparsifier.sparsity()) < 1e-9

def test_export_with_callback_removed(tmp_path):
    learn = _fitted(tmp_path, granularity='kernel', criteria='movement')
    assert not any(isinstance(c, SparsifyCallback) for c in learn.cbs)
    assert not any(type(m).__name__ == '_SparsityMetric' for m in learn.metrics)
    learn.export('removed.pkl')
    learn2 = load_learner(tmp_path/'removed.pkl')
    _same_masks(learn2.sparsifier, learn.sparsifier)
    assert learn2.sparsifier.model is learn2.model
    # a new callback finds the masks in the zeros, and goes on from them
    learn2.dls = learn.dls
    with learn2.no_bar(): learn2.fit(1, 1e-2, cbs=SparsifyCallback(75, 'kernel'))
    for a,b in zip(learn.sparsifier.layers, learn2.sparsifier.layers): assert not (~a.mask & b.mask).any()
    assert all(l.n_pruned == round(0.75*l.n_groups) for l in learn2.sparsifier.layers)

def _mine(w, **kw): return w.detach().abs()**0.5
def _rows(nd): return (nd-2,)

def _cycle(*regs):
    "Combinations that use every name of every registry at least once"
    ks = [list(r) for r in regs]
    return [tuple(k[i % len(k)] for k in ks) for i in range(max(map(len, ks)))]

combos = [dict(granularity=g, criteria=c, schedule=s) for g,c,s in _cycle(granularities, criteria, schedules)]

@pytest.mark.parametrize('kw', combos, ids=lambda kw: '-'.join(str(v) for v in kw.values()))
def test_callback_with_every_registry_object_pickles_and_copies(kw):
    cb = SparsifyCallback(50, **kw)
    for c in (pickle.loads(pickle.dumps(cb)), copy.deepcopy(cb)):
        assert c.config.granularity is cb.config.granularity and c.config.criteria is cb.config.criteria  # registered objects come back as themselves
        assert c.schedule(10, 70, 0.3) == cb.schedule(10, 70, 0.3)

def test_user_objects_pickle(tmp_path):
    g = register_granularity(Granularity('rows_test', _rows, min_ndim=4), overwrite=True)
    c = Criterion('sqrt_test', _mine)  # not registered: pickled by value
    try:
        cb = SparsifyCallback(50, granularity='rows_test', criteria=c, schedule=Iterative(4))
        for cb2 in (pickle.loads(pickle.dumps(cb)), copy.deepcopy(cb)):
            assert cb2.config.granularity is g and cb2.config.criteria.name == 'sqrt_test' and cb2.schedule.n == 4
        learn = _fitted(tmp_path, granularity='rows_test', criteria=c)
        sp2 = pickle.loads(pickle.dumps(learn.sparsifier))
        _same_masks(sp2, learn.sparsifier)
    finally: granularities.pop('rows_test')

@pytest.mark.parametrize('gran', list(granularities))
def test_sparsifier_roundtrip_keeps_applying(gran):
    torch.manual_seed(0)
    sp = Sparsifier(small_convnet(), gran, exclude=_excl(gran)).prune(50)  # 2:4 reaches 50 % at most
    for sp2 in (pickle.loads(pickle.dumps(sp)), copy.deepcopy(sp)):
        _same_masks(sp2, sp)
        with torch.no_grad():
            for p in sp2.model.parameters(): p.add_(1.)  # an update that revives every pruned weight...
        sp2.apply()  # ...is undone by the masks the copy holds
        for l in sp2.layers: assert (l.weight[~l.mask.expand(l.shape)] == 0).all()

@pytest.mark.parametrize('gran', list(granularities))
def test_stripped_model_loads_strict(tmp_path, gran):
    learn = _fitted(tmp_path, 50, granularity=gran, exclude=_excl(gran))
    learn.export('s.pkl')
    learn2 = load_learner(tmp_path/'s.pkl')
    plain = learn2.sparsifier.strip()
    fresh = small_convnet()
    assert plain.state_dict().keys() == fresh.state_dict().keys()  # no mask or copy left behind in the model
    fresh.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(_out(fresh, x), _out(plain, x))
    assert all(l.mask is None and l.init is None for l in learn2.sparsifier.layers)

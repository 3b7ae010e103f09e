"Callbacks, schedules, criteria and granularities pickle and deep-copy"
import copy, pickle, pytest, torch
from fastprune.all import *
from fastprune.criteria import criteria
from fastprune.granularity import granularities
from fastprune.schedules import schedules
from conftest import make_learner

@pytest.mark.parametrize('obj', [*schedules.values(), Iterative(5), OneCycle(beta=6), *criteria.values(), *granularities.values()], ids=lambda o: getattr(o, '__name__', None) or repr(o))
def test_registry_objects_roundtrip(obj):
    for o in (pickle.loads(pickle.dumps(obj)), copy.deepcopy(obj)):
        assert type(o) is type(obj)
        if hasattr(obj, 'name'): assert o.name == obj.name
    if callable(obj) and not hasattr(obj, 'name'):
        assert pickle.loads(pickle.dumps(obj))(0, 80, 0.5) == obj(0, 80, 0.5)

def test_callback_pickles_before_and_after_fit():
    cb = SparsifyCallback(70, 'kernel', criteria='movement', schedule=Iterative(4))
    cb2 = pickle.loads(pickle.dumps(cb))
    assert cb2.schedule.n == 4 and cb2.config.criteria is get_criterion('movement')
    learn = make_learner(n_train=128)
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=cb)
    cb3 = pickle.loads(pickle.dumps(cb))
    assert [l.n_pruned for l in cb3.sparsifier.layers] == [l.n_pruned for l in cb.sparsifier.layers]
    cb4 = copy.deepcopy(cb)
    assert cb4.sparsifier.sparsity() == cb.sparsifier.sparsity()

def test_stripped_model_loads_strict_into_plain_architecture():
    import timm
    learn = make_learner(n_train=128)
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=SparsifyCallback(80, 'filter'))
    plain = learn.sparsifier.strip()
    fresh = timm.create_model('resnet10t', num_classes=10)
    fresh.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16)
    fresh.eval(); plain.eval()
    with torch.no_grad(): assert torch.allclose(fresh(x), plain(x))

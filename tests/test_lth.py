"Lottery tickets: rewinding after each pruning event, reset at the end, saved tickets"
import torch
from fastai.callback.core import Callback
from fastprune.all import *
from conftest import make_learner

def _init_state(learn): return {k: v.detach().clone() for k,v in learn.model.state_dict().items()}

def test_lth_rewinds_kept_weights_after_each_event():
    learn = make_learner(n_train=256)
    w0 = _init_state(learn)
    events = []
    seen = {}
    class Before(Callback):
        order = SparsifyCallback.order - 1
        def before_step(self): seen['n'] = learn.sparsifier.events
    class After(Callback):
        order = SparsifyCallback.order + 1  # after SparsifyCallback.after_step, which rewinds
        def after_step(self):
            if learn.sparsifier.events != seen['n']:
                sd = learn.model.state_dict()
                for l in learn.sparsifier.layers:
                    k = l.name + '.weight'
                    assert torch.equal(sd[k], w0[k]*l.mask), k
                events.append(learn.sparsifier.sparsity())
    with learn.no_bar(): learn.fit(2, 1e-3, cbs=[Before(), After(), SparsifyCallback(60, schedule=Iterative(3), lth=True)])
    assert len(events) == 3 and abs(events[-1] - 60) < 0.01

def test_reset_end_and_saved_tickets(tmp_path):
    learn = make_learner(n_train=256)
    with learn.no_bar(): learn.fit(1, 1e-3)  # the rewind point is the weights the pruning fit starts from
    w_start = _init_state(learn)
    cb = SparsifyCallback(50, schedule='iterative', reset_end=True, lth=True, save_tickets=tmp_path/'tickets')
    with learn.no_bar(): learn.fit(2, 1e-3, cbs=cb)
    sd = learn.model.state_dict()
    for l in learn.sparsifier.layers: assert torch.equal(sd[l.name+'.weight'], w_start[l.name+'.weight']*l.mask)
    assert len(cb.tickets) == 4 and all(p.exists() for p in cb.tickets)  # one per event, and the final ticket
    t = torch.load(cb.tickets[-1])
    assert abs(t['sparsity'] - 50) < 0.01
    assert set(t['masks']) == set(learn.sparsifier.layers.attrgot('name'))

def test_rewind_iter_after_first_event_rejected():
    import pytest
    learn = make_learner(n_train=256)
    with pytest.raises(ValueError, match='rewind point'):
        learn.fit(1, cbs=SparsifyCallback(50, schedule='one_shot', lth=True, rewind_iter=2))

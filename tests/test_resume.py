"Interrupted fits resumed from a checkpoint end where the uninterrupted fit ends; a crash inside the callback leaves the last completed step"
import random, pytest, torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.tracker import SaveModelCallback
from fastai.torch_core import set_seed
from fastprune.all import *
from conftest import make_learner, small_convnet

N_EPOCH = 4  # of 4 steps each (256 digits, batches of 64)

class Reseed(Callback):
    "fastai checkpoints no DataLoader RNG: each epoch shuffles from its own seed, so a resumed fit sees the batches the uninterrupted one saw"
    order = -30
    def before_train(self): self.dl.rng = random.Random(self.epoch)

class Steps(Callback):
    "The measured sparsity and the event count after every step"
    order = SparsifyCallback.order+1
    def before_fit(self): self.vals,self.events = [],[]
    def after_step(self): self.vals.append(self.learn.sparsifier.sparsity()); self.events.append(self.learn.sparsifier.events)

class StopAfterEpoch(Callback):
    order = SaveModelCallback.order+1  # after the checkpoint of that epoch is written
    def __init__(self, epoch): self.stop = epoch
    def after_epoch(self):
        if self.epoch == self.stop: raise CancelFitException()

class CrashAt(Callback):
    "A crash (a lost node, a ctrl-C) in the middle of an epoch"
    def __init__(self, it): self.it = it
    def after_batch(self):
        if self.training and self.train_iter == self.it: raise RuntimeError('node lost')

def _learner(path, seed=0, pre=None):
    set_seed(seed)
    m = small_convnet()
    if pre is not None: Sparsifier(m).prune(pre)  # a model that was pruned before this fit
    return make_learner(m, n_train=256, path=path)  # the same data whatever the seed

def _fit(learn, cb, *cbs, start_epoch=0):
    rec = Steps()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(N_EPOCH, 1e-2, cbs=[cb, Reseed(), rec, *cbs], start_epoch=start_epoch)
    return rec

def _ckpt(ep): return [SaveModelCallback(every_epoch=True, fname='ck', with_opt=True), StopAfterEpoch(ep)]

def _same(learn, ref):
    "Bit-identical masks and weights"
    for a,b in zip(learn.sparsifier.layers, ref.sparsifier.layers): assert torch.equal(a.mask, b.mask), a.name
    sd,rd = learn.model.state_dict(),ref.model.state_dict()
    for k in rd: assert torch.equal(sd[k], rd[k]), k

cfgs = dict(dense=dict(criteria='large_final'),                     # from a dense model
            told=dict(criteria='random', start_sparsity=30, pre=30),  # from a model pruned before, saying so
            found=dict(criteria='random', pre=30))                    # from a model pruned before, found in its zeros

def _cb(cfg): return SparsifyCallback(70, schedule='linear', **{k:v for k,v in cfgs[cfg].items() if k != 'pre'})

@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    "Uninterrupted fits"
    res = {}
    for cfg in cfgs:
        learn = _learner(tmp_path_factory.mktemp('ref'), pre=cfgs[cfg].get('pre'))
        res[cfg] = learn,_fit(learn, _cb(cfg))
    return res

@pytest.mark.parametrize('cfg', ['dense', 'told'])
def test_resume_at_epoch_boundary_with_a_fresh_learner(tmp_path, reference, cfg):
    ref,ref_rec = reference[cfg]
    learn = _learner(tmp_path, pre=cfgs[cfg].get('pre'))
    _fit(learn, _cb(cfg), *_ckpt(1))
    assert 0 < learn.sparsifier.sparsity() < 70  # stopped mid-ramp
    learn2 = _learner(tmp_path, seed=1)  # another init: everything comes from the checkpoint
    learn2.load('ck_1', with_opt=True)
    # a new callback with the same arguments: the ramp starts at `start_sparsity`, or 0, as no checkpoint says where it started
    rec = _fit(learn2, _cb(cfg), start_epoch=2)
    assert rec.vals == ref_rec.vals[8:] and rec.events == ref_rec.events[8:]
    _same(learn2, ref)

def test_resume_mid_epoch_with_the_same_learner_and_callback(tmp_path, reference):
    ref,ref_rec = reference['found']
    learn,cb = _learner(tmp_path, pre=30),_cb('found')
    with pytest.raises(RuntimeError, match='node lost'): _fit(learn, cb, SaveModelCallback(every_epoch=True, fname='ck', with_opt=True), CrashAt(10))
    assert cb.sparsifier.events > ref_rec.events[7]  # it pruned after the checkpoint
    learn.load('ck_1', with_opt=True)  # the end of epoch 1: the callback's masks are two steps ahead of these weights
    rec = _fit(learn, cb, start_epoch=2)  # the callback remembers where its ramp started: the 30 % it found
    assert rec.vals == ref_rec.vals[8:] and rec.events == ref_rec.events[8:]
    _same(learn, ref)

def test_resume_with_lottery_ticket_needs_the_rewind_point(tmp_path):
    learn = _learner(tmp_path)
    _fit(learn, SparsifyCallback(60, schedule='iterative', lth=True), *_ckpt(1))
    learn2 = _learner(tmp_path)
    learn2.load('ck_1', with_opt=True)
    before = {k: v.clone() for k,v in learn2.model.state_dict().items()}
    with pytest.raises(ValueError, match=r'rewind point \(iteration 0\).*same callback'):
        _fit(learn2, SparsifyCallback(60, schedule='iterative', lth=True), start_epoch=2)
    assert all(torch.equal(before[k], v) for k,v in learn2.model.state_dict().items())

class Bad:
    "A schedule that breaks halfway through"
    def __call__(self, start, end, pos): return 150. if 0.5 < pos < 1 else start + (end-start)*pos

class Snap(Callback):
    order = SparsifyCallback.order+1
    def after_step(self): self.params = [p.detach().clone() for p in self.learn.model.parameters()]

def test_crash_in_callback_keeps_last_step_then_fresh_callback_starts_clean(tmp_path):
    learn,snap = _learner(tmp_path),Snap()
    with pytest.raises(ValueError, match=r'schedule value at pos=0\.5.*\[0, 100\], got 150'): _fit(learn, SparsifyCallback(80, schedule=Bad()), snap)
    # the step that crashed was not taken: parameters as after the last completed step
    # (BatchNorm's running statistics did see that step's forward pass: fastai ran it before the callback's before_step)
    for p,q in zip(learn.model.parameters(), snap.params): assert torch.equal(p, q)
    crashed = learn.sparsifier
    assert 30 < crashed.sparsity() < 41
    # no hidden state: the sparsity column is gone from the metrics, a fresh callback builds its own sparsifier from the zeros it finds
    assert not any(type(m).__name__ == '_SparsityMetric' for m in learn.metrics)
    was = [l.mask.clone() for l in crashed.layers]
    rec = _fit(learn, SparsifyCallback(60, schedule='linear'))
    sp = learn.sparsifier
    assert sp is not crashed and rec.vals[-1] == pytest.approx(60, abs=100/sp.n_params*9)
    for w,l in zip(was, sp.layers): assert not (~w & l.mask).any()  # what was pruned stays pruned
    for l in sp.layers: assert l.n_pruned == round(0.6*l.n_groups)

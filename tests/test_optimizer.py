"No optimizer can revive a pruned weight; BatchNorm channels of pruned filters stay exactly zero"
import pytest, torch
from torch import nn
from functools import partial
from fastai.callback.core import Callback
from fastai.optimizer import SGD, Adam, OptimWrapper
from fastprune.all import *
from fastprune.sparsifier import optimizer_states
from conftest import make_learner, small_convnet, CheckDead

class CheckStepRevives(Callback):
    "Without the after-step mask, the raw optimizer update itself leaves pruned weights at zero (grads and state are masked)"
    order = SparsifyCallback.order - 1  # its after_step runs before SparsifyCallback's, which re-applies the masks
    def __init__(self): self.seen = 0
    def after_step(self):
        for l in self.learn.sparsifier.layers:
            if l.mask is not None:
                assert l.weight[~l.mask.expand(l.shape)].abs().sum() == 0, l.name
                self.seen += 1

opts = {'sgd_mom': partial(SGD, mom=0.9, wd=1e-2), 'adam': Adam,
        'torch_adamw': partial(OptimWrapper, opt=torch.optim.AdamW, weight_decay=0.1),
        'torch_sgd_nesterov': partial(OptimWrapper, opt=partial(torch.optim.SGD, momentum=0.9, nesterov=True, weight_decay=1e-3))}

@pytest.mark.parametrize('opt', list(opts))
@pytest.mark.parametrize('gran', ['weight', 'filter'])
def test_optimizer_cannot_revive(opt, gran):
    learn = make_learner(n_train=256, opt_func=opts[opt])
    dead,raw = CheckDead(),CheckStepRevives()
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(60, gran, schedule='iterative', end_pct=0.6), dead, raw])
    assert dead.n > 0 and raw.seen > 0

def test_filter_masks_bn_channel_every_step():
    learn = make_learner(small_convnet(), n_train=256, opt_func=partial(SGD, mom=0.9))
    outs = {}
    bns = [m for m in learn.model if isinstance(m, nn.BatchNorm2d)]
    for i,bn in enumerate(bns): bn.register_forward_hook(lambda m,inp,o,i=i: outs.__setitem__(i, o.detach()))
    class CheckBN(Callback):
        order = 50
        def after_step(self):
            for i,(l,bn) in enumerate(zip(self.learn.sparsifier.layers, bns)):
                if l.mask is None: continue
                d = ~l.mask.flatten()
                assert bn.weight[d].abs().sum() == 0 and bn.bias[d].abs().sum() == 0 and l.module.bias[d].abs().sum() == 0
    with learn.no_bar(): learn.fit(2, 5e-2, cbs=[SparsifyCallback(50, 'filter', schedule='one_shot'), CheckBN()])
    learn.model.eval()
    xb = learn.dls.valid.one_batch()[0]
    with torch.no_grad(): learn.model(xb)
    for i,l in enumerate(learn.sparsifier.layers):
        assert outs[i][:, ~l.mask.flatten()].abs().sum() == 0  # the pruned channel outputs exactly zero, in eval mode too

def test_parameter_identity_kept():
    learn = make_learner(n_train=128)
    learn.create_opt()
    ids = [id(p) for p in learn.model.parameters()]
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=SparsifyCallback(50))
    assert [id(p) for p in learn.model.parameters()] == ids
    assert [id(p) for p in learn.opt.all_params().itemgot(0)] == ids

def test_frozen_layers_are_pruned_but_not_trained():
    learn = make_learner(n_train=128)
    for p in learn.model.conv1.parameters(): p.requires_grad_(False)
    frozen = learn.model.conv1[0].weight.detach().clone()
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=SparsifyCallback(50))
    w = learn.model.conv1[0].weight
    kept = w != 0
    assert torch.equal(w[kept], frozen[kept])  # the frozen layer did not train...
    assert abs((~kept).float().mean().item() - 0.5) < 0.01  # ...but it was pruned

class CheckRevived(Callback):
    "Right after each pruning event: every piece of optimizer state of a weight the event brought back is zero, as for a new weight"
    order = SparsifyCallback.order + 1  # after its before_step (prune, clear_state)
    def before_fit(self): self.prev,self.seen = None,0
    def before_step(self):
        sp = self.learn.sparsifier
        masks = [None if l.mask is None else l.mask.clone() for l in sp.layers]
        if self.prev is not None:
            for l,old,new in zip(sp.layers, self.prev, masks):
                if old is None: continue
                back = (torch.ones_like(old) if new is None else new) & ~old
                if not back.any(): continue
                back = back.expand(l.shape)
                for st in optimizer_states(self.learn.opt):
                    for k,v in (st.get(l.weight) or {}).items():
                        if isinstance(v, torch.Tensor) and v.shape == l.weight.shape: assert (v[back] == 0).all(), (l.name, k)
                self.seen += int(back.sum())
        self.prev = masks

@pytest.mark.parametrize('opt', ['adam', 'torch_adamw'])
def test_revived_weights_restart_from_nothing(opt):
    learn = make_learner(n_train=256, opt_func=opts[opt])
    rev = CheckRevived()
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(60, schedule='dsd'), rev])  # up to 60 %, then down again
    assert rev.seen > 0

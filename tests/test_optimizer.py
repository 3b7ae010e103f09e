"No optimizer can revive a pruned weight; BatchNorm channels of pruned filters stay exactly zero"
import pytest, torch
from torch import nn
from functools import partial
from fastai.callback.core import Callback
from fastai.optimizer import SGD, Adam, OptimWrapper
from fastprune.all import *
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

"The callback skips re-applying the masks after the step only for optimizers that provably keep pruned weights at zero: the fit is bit-identical either way"
import pytest, torch
from functools import partial
from torch import nn
from fastai.callback.core import Callback
from fastai import optimizer as fo
from fastprune.callback import SparsifyCallback, optimizer_keeps_zeros
from conftest import make_learner, small_convnet

ps = lambda: [nn.Parameter(torch.randn(4))]

@pytest.mark.parametrize('make', [lambda p: fo.Adam(p, 1e-3), lambda p: fo.Adam(p, 1e-3, decouple_wd=False), lambda p: fo.SGD(p, 1e-2, mom=0.9, wd=1e-3),
                                  lambda p: fo.RMSProp(p, 1e-3, mom=0.9), lambda p: fo.RAdam(p, 1e-3), lambda p: fo.QHAdam(p, 1e-3),
                                  lambda p: fo.Larc(p, 1e-3), lambda p: fo.Lamb(p, 1e-3),
                                  *[(lambda o: lambda p: fo.OptimWrapper(p, o, lr=1e-3))(o) for o in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop,
                                    torch.optim.Adagrad, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adadelta)]])
def test_elementwise_optimizers_keep_zeros(make): assert optimizer_keeps_zeros(make(ps()))

@pytest.mark.parametrize('make', [lambda p: fo.ranger(p, 1e-3), lambda p: fo.OptimWrapper(p, torch.optim.LBFGS, lr=1e-3), lambda p: fo.OptimWrapper(p, torch.optim.Rprop, lr=1e-3),
                                  lambda p: fo.Optimizer(p, [fo.average_grad, lambda p, lr, **kw: p.data.add_(1.)], lr=1e-3),
                                  lambda p: type('MyOptimizer', (fo.Optimizer,), {})(p, [fo.sgd_step], lr=1e-3), lambda p: None])
def test_others_get_the_masks_every_step(make): assert not optimizer_keeps_zeros(make(ps()))

class ZerosAfterStep(Callback):
    "Checks, after every optimizer step, that every pruned weight (and partner) is zero"
    order = SparsifyCallback.order + 1
    def after_step(self):
        sp = self.learn.sparsifier
        for t,m in zip(sp._ts, sp._ms): assert not (t.detach()*(1 - m)).any()  # masks broadcast over their groups

def fit(opt_func, reapply, granularity='weight', schedule='one_cycle'):
    torch.manual_seed(0)
    learn = make_learner(small_convnet(8), n_train=512, opt_func=opt_func)
    cb = SparsifyCallback(70, granularity=granularity, schedule=schedule, reapply=reapply, show_sparsity=False, min_delta=2)
    with learn.no_bar(), learn.no_logging(): learn.fit(2, 3e-3, cbs=[cb, ZerosAfterStep()])
    return learn,cb

@pytest.mark.parametrize('opt_func,granularity,schedule', [
    (fo.Adam, 'weight', 'one_cycle'), (fo.Adam, 'filter', 'dsd'), (partial(fo.SGD, mom=0.9, wd=1e-2), 'weight', 'dsd'), (fo.Lamb, 'kernel', 'one_cycle'),
    (partial(fo.OptimWrapper, opt=partial(torch.optim.SGD, momentum=0.9, nesterov=True, weight_decay=1e-3)), 'weight', 'one_cycle'),
    (partial(fo.OptimWrapper, opt=torch.optim.AdamW), 'filter', 'one_cycle')])
def test_the_fit_is_the_same_without_reapplying(opt_func, granularity, schedule):
    "Falling targets (dsd) revive weights too; filters mask biases and BatchNorm entries with them"
    a,cb = fit(opt_func, None, granularity, schedule)
    assert not cb._reapply
    b,_ = fit(opt_func, True, granularity, schedule)
    sa,sb = a.model.state_dict(),b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.sparsifier.events == b.sparsifier.events > 5

def test_lookahead_gets_the_masks_every_step():
    learn,cb = fit(fo.ranger, None)  # ZerosAfterStep fails if a sync brings a pruned weight back
    assert cb._reapply
    with pytest.raises(Exception, match='ZerosAfterStep'): fit(fo.ranger, False)  # and without them, its syncs do

def test_reapply_is_checked():
    with pytest.raises(TypeError, match='reapply must be True or False'): SparsifyCallback(50, reapply='yes')

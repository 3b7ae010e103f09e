"Mixed precision, bf16 weights, channels-last models and frozen layers"
import warnings, pytest, torch
from torch import nn
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.torch_core import params
from fastprune.all import *
from conftest import make_learner, small_convnet, assert_exact as _exact, CheckDead as Dead, cpu_autocast

class ConvDtype(Callback):
    "The dtype the first convolution computes in, during training"
    def before_fit(self): self.h = self.learn.model[0].register_forward_hook(lambda m,i,o: setattr(self, 'dtype', o.dtype))
    def after_fit(self): self.h.remove()

def test_fastai_to_bf16_on_cpu():
    learn = make_learner(small_convnet(), n_train=256).to_bf16()
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='.*autocast')  # fastai asks for CUDA autocast: torch disables it on a CPU, and says so
        with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(70, min_delta=0), dead := Dead()])
    assert dead.n > 0 and any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    _exact(learn.sparsifier, 70)
    assert abs(learn.sparsifier.sparsity() - 70) < 100/learn.sparsifier.n_params

@pytest.mark.parametrize('crit', ['large_final', 'taylor'])
def test_bf16_autocast_on_cpu_masks_fp32_weights(crit):
    learn = make_learner(small_convnet(), n_train=256)
    dead,dt = Dead(),ConvDtype()
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(60, 'kernel', criteria=crit), cpu_autocast(), dead, dt])
    assert dt.dtype == torch.bfloat16 and dead.n > 0  # computed in bf16, masked in fp32
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    _exact(learn.sparsifier, 60)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 mixed precision needs CUDA')
def test_fastai_to_fp16_on_cuda():
    learn = make_learner(small_convnet(), n_train=256).to_fp16()
    learn.dls.to('cuda'); learn.model.cuda()
    dt = ConvDtype()
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(60, 'filter', criteria='taylor'), dead := Dead(), dt])
    assert dt.dtype == torch.float16 and dead.n > 0
    _exact(learn.sparsifier, 60)

@pytest.mark.parametrize('gran', ['weight', 'kernel', 'filter', 'channel'])
def test_bf16_weights(gran):
    torch.manual_seed(0)
    m = small_convnet().to(torch.bfloat16)
    sp = Sparsifier(m, gran).prune(55)
    _exact(sp, 55)
    # a plain optimizer step on masked gradients: the pruned bf16 weights stay exactly zero
    x = torch.randn(4, 3, 8, 8, dtype=torch.bfloat16)
    m(x).float().pow(2).mean().backward()
    sp.mask_grads()
    torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9).step()
    sp.apply()
    _exact(sp, 55)
    assert all(l.weight.dtype == torch.bfloat16 for l in sp.layers)

@pytest.mark.parametrize('gran', ['weight', 'vector', 'kernel', 'filter', 'channel'])
def test_channels_last_same_masks(gran):
    torch.manual_seed(0)
    a = small_convnet()
    b = small_convnet().to(memory_format=torch.channels_last)
    b.load_state_dict(a.state_dict())
    sa,sb = Sparsifier(a, gran).prune(65),Sparsifier(b, gran).prune(65)
    for la,lb in zip(sa.layers, sb.layers):
        assert torch.equal(la.mask, lb.mask) and torch.equal(la.weight, lb.weight)
        assert lb.weight.is_contiguous(memory_format=torch.channels_last)

def test_channels_last_fit():
    learn = make_learner(small_convnet().to(memory_format=torch.channels_last), n_train=256)
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(60, 'filter'), dead := Dead()])
    assert dead.n > 0
    _exact(learn.sparsifier, 60)
    assert all(l.weight.is_contiguous(memory_format=torch.channels_last) for l in learn.sparsifier.layers)

def _body_head(m): return [params(m[:6]), params(m[6:])]

def test_frozen_body_is_pruned_by_magnitude_and_trains_after_unfreeze():
    learn = make_learner(small_convnet(), n_train=256, splitter=_body_head)
    learn.freeze()
    convs = [learn.model[0], learn.model[3]]
    w0 = [c.weight.detach().clone() for c in convs]
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[SparsifyCallback(50, schedule='one_shot'), dead := Dead()])
    sp = learn.sparsifier
    for c,w,l in zip(convs, w0, sp.layers):
        kept = l.mask.expand(l.shape)
        assert torch.equal(c.weight[kept], w[kept])  # frozen: what is kept did not move
        # pruned by magnitude, once: every kept weight is at least as large as every pruned one
        assert w[kept].abs().min() >= w[~kept].abs().max()
    _exact(sp, 50)
    assert not torch.equal(learn.model[1].weight, torch.ones_like(learn.model[1].weight))  # fastai still trains BatchNorm
    learn.unfreeze()
    with learn.no_bar(): learn.fit(1, 1e-2, cbs=SparsifyCallback(50))
    assert not torch.equal(convs[0].weight, w0[0]*sp.layers[0].mask)  # unfrozen: the kept weights train
    _exact(learn.sparsifier, 50)

def test_fine_tune_prunes_frozen_then_unfrozen():
    learn = make_learner(small_convnet(), n_train=256, splitter=_body_head)
    with learn.no_bar(): learn.fine_tune(1, 1e-2, freeze_epochs=1, cbs=SparsifyCallback(40, 'kernel'))
    _exact(learn.sparsifier, 40)

import warnings
import pytest, torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

warnings.filterwarnings('ignore', category=UserWarning, module='fastai')

def digits_tensors(size, seed, n_train=1437):
    "scikit-learn's digits, upscaled to `size` and 3 channels, shuffled by `seed`: ((x, y) train, (x, y) valid)"
    from sklearn.datasets import load_digits
    X,y = load_digits(return_X_y=True)
    x = F.interpolate(torch.tensor(X, dtype=torch.float32).view(-1,1,8,8)/16., size=size, mode='bilinear').expand(-1,3,-1,-1).contiguous()
    y = torch.tensor(y)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return (x[idx[:n_train]], y[idx[:n_train]]), (x[idx[n_train:]], y[idx[n_train:]])

class DigitsDataset(TensorDataset):
    "`learn.export` keeps an empty copy of the data"
    def new_empty(self): return type(self)(*(t[:0] for t in self.tensors))

def digits_dls(size=16, bs=64, seed=0, n_train=1437, n_valid=None):
    from fastai.data.core import DataLoaders
    (xt,yt),(xv,yv) = digits_tensors(size, seed, n_train)
    return DataLoaders.from_dsets(DigitsDataset(xt,yt), DigitsDataset(xv[:n_valid],yv[:n_valid]), bs=bs, device='cpu')

def make_learner(arch='resnet10t', size=16, n_train=512, opt_func=None, seed=0, n_valid=None, **kw):
    "A real timm network, randomly initialised, on a slice of scikit-learn's digits"
    import timm
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from fastai.optimizer import Adam
    set_seed(seed)
    model = timm.create_model(arch, num_classes=10) if isinstance(arch, str) else arch
    return Learner(digits_dls(size=size, n_train=n_train, seed=seed, n_valid=n_valid), model, loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                   opt_func=opt_func or Adam, **kw)

def small_convnet(c=8):
    "A tiny conv net with BatchNorm, for fast exactness checks"
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, 2*c, 3, padding=1, bias=True), nn.BatchNorm2d(2*c), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2*c, 10))

def trained_bn(model, seed=0):
    "BatchNorm statistics and affine parameters like a trained network's, so that a wrong cut shows in the outputs"
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t,lo,hi in [(m.running_mean,-1,1), (m.running_var,.5,2), (m.weight,.5,1.5), (m.bias,-.5,.5)]: t.copy_(torch.rand(t.shape, generator=g)*(hi-lo)+lo)
    return model

def vgg_cifar(bn=True):
    "torchvision's VGG16(-BN) convolutions with a CIFAR-style head: global average pool and one Linear"
    from torchvision import models as tvm
    return nn.Sequential((tvm.vgg16_bn if bn else tvm.vgg16)(num_classes=10).features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))

def n_params(m): return sum(p.numel() for p in m.parameters())

@pytest.fixture
def learner(): return make_learner

def pytest_configure(config):
    from fastai.learner import Learner
    Learner._no_bar = True

def assert_exact(sp, target, zeros_match=True):
    "Every layer of `sp` has its exact count of groups pruned (`round(target·G)`, each layer keeping one), all exactly zero, and (`zeros_match`) nothing else is"
    import math
    for l in sp.layers:
        assert l.n_pruned == min(math.floor(target/100*l.n_groups+0.5), l.n_groups-1), l
        zeros = sp.granularity.reduce((l.weight == 0).float()).flatten() == 1
        assert not (zeros.logical_not() & ~l.mask.flatten()).any(), l.name  # every pruned group is zero
        if zeros_match: assert torch.equal(zeros, ~l.mask.flatten()), l.name  # and nothing else is

def _check_dead_cb():
    from fastai.callback.core import Callback
    from fastprune.callback import SparsifyCallback
    from fastprune.sparsifier import optimizer_states, second_moments, second_moment_hold
    class CheckDead(Callback):
        "After every step (once SparsifyCallback has re-masked), pruned weights and their optimizer state are exactly zero (second moments: held, positive), in weights of `dtype`"
        order = SparsifyCallback.order+1
        def __init__(self, dtype=torch.float32): self.dtype,self.n = dtype,0
        def after_step(self):
            states = optimizer_states(self.learn.opt)
            for l in self.learn.sparsifier.layers:
                if self.dtype is not None: assert l.weight.dtype == self.dtype
                if l.mask is None: continue
                dead = ~l.mask.expand(l.shape)
                assert (l.weight[dead] == 0).all(), l.name
                for st in states:
                    for k,v in (st.get(l.weight) or {}).items():
                        if not (isinstance(v, torch.Tensor) and v.shape == l.weight.shape): continue
                        if k in second_moments: assert ((v[dead] > 0) & (v[dead] <= second_moment_hold)).all(), (l.name, k)
                        else: assert (v[dead] == 0).all(), (l.name, k)
                self.n += 1
    return CheckDead

def __getattr__(name):  # the callback imports fastai: only when a test asks for it
    if name == 'CheckDead': return _check_dead_cb()
    raise AttributeError(name)

def cpu_autocast():
    "A callback: bf16 autocast on the CPU, as `MixedPrecision` does on CUDA (fastai's asks for CUDA autocast, which torch disables on a CPU)"
    from fastai.callback.core import Callback
    from fastai.callback.fp16 import MixedPrecision
    from fastai.torch_core import to_float
    class CPUAutocast(Callback):
        order = MixedPrecision.order
        def before_batch(self): self.ac = torch.autocast('cpu', dtype=torch.bfloat16); self.ac.__enter__()
        def after_pred(self): self.learn.pred = to_float(self.pred)
        def after_loss(self): self.ac.__exit__(None, None, None)
    return CPUAutocast()

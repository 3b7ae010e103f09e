import warnings
import pytest, torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

warnings.filterwarnings('ignore', category=UserWarning, module='fastai')

def _digits(size, seed, n_train=1437):
    from sklearn.datasets import load_digits
    X,y = load_digits(return_X_y=True)
    x = F.interpolate(torch.tensor(X, dtype=torch.float32).view(-1,1,8,8)/16., size=size, mode='bilinear').expand(-1,3,-1,-1).contiguous()
    y = torch.tensor(y)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return (x[idx[:n_train]], y[idx[:n_train]]), (x[idx[n_train:]], y[idx[n_train:]])

def digits_dls(size=16, bs=64, seed=0, n_train=1437):
    from fastai.data.core import DataLoaders
    (xt,yt),(xv,yv) = _digits(size, seed, n_train)
    return DataLoaders.from_dsets(TensorDataset(xt,yt), TensorDataset(xv,yv), bs=bs, device='cpu')

def make_learner(arch='resnet10t', size=16, n_train=512, opt_func=None, seed=0, **kw):
    "A real timm network, randomly initialised, on a slice of scikit-learn's digits"
    import timm
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.torch_core import set_seed
    from fastai.optimizer import Adam
    set_seed(seed)
    model = timm.create_model(arch, num_classes=10) if isinstance(arch, str) else arch
    return Learner(digits_dls(size=size, n_train=n_train, seed=seed), model, loss_func=CrossEntropyLossFlat(), metrics=accuracy,
                   opt_func=opt_func or Adam, **kw)

def small_convnet(c=8):
    "A tiny conv net with BatchNorm, for fast exactness checks"
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, 2*c, 3, padding=1, bias=True), nn.BatchNorm2d(2*c), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2*c, 10))

@pytest.fixture
def learner(): return make_learner

def pytest_configure(config):
    from fastai.learner import Learner
    Learner._no_bar = True

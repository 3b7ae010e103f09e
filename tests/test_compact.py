"Compaction of structured masks (exact, on VGG16, VGG16-BN, MobileNetV2, ResNet-18), learn.compact"
import copy, io, math, warnings
from functools import partial
import pytest, torch
from torch import nn
from torchvision import models as tvm
from fastprune.all import *
from fastprune.compact import compact, compact_plan, live_inputs
from conftest import make_learner, small_convnet, trained_bn, vgg_cifar, n_params

warnings.filterwarnings('ignore', category=FutureWarning)
warnings.filterwarnings('ignore', message='compact removes')  # what couplings keep: tested in test_zoo.py
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

def same(a, b, tol=1e-5): a.eval(); b.eval(); return ((a(X) - b(X)).abs().max() / b(X).abs().max()).item() < tol
def snapshot(m): return {k: v.clone() for k,v in m.state_dict().items()}
def unchanged(m, snap): return set(snap) == set(m.state_dict()) and all(torch.equal(v, snap[k]) for k,v in m.state_dict().items())

archs = {'vgg16': lambda: vgg_cifar(False), 'vgg16_bn': lambda: vgg_cifar(True),
         'mobilenet_v2': lambda: tvm.mobilenet_v2(num_classes=10), 'resnet18': lambda: tvm.resnet18(num_classes=10)}

@pytest.mark.parametrize('arch', list(archs))
def test_compact_is_exact_and_smaller(arch):
    torch.manual_seed(0)
    m = trained_bn(archs[arch]())
    sp = Sparsifier(m, 'filter').prune(50)
    snap = snapshot(m)
    plan = compact_plan(m, X)
    small = compact(m, X, sparsifier=sp)
    assert unchanged(m, snap)                                  # the original is untouched
    assert same(small, m)                                       # same outputs, eval mode
    assert n_params(small) < 0.75*n_params(m)
    assert plan.removed.sum() > 0 and (plan.kept + plan.removed == plan.channels).all()
    convs = {n: c.out_channels for n,c in small.named_modules() if isinstance(c, nn.Conv2d)}
    if arch.startswith('vgg'): assert list(convs.values()) == [32, 32, 64, 64, 128, 128, 128, 256, 256, 256, 256, 256, 256]
    if arch == 'mobilenet_v2':  # a dead depthwise filter takes its expansion channel, both BatchNorm channels and the projection's input
        dw = small.features[2].conv[1][0]
        assert dw.groups == dw.in_channels == dw.out_channels == small.features[2].conv[0][0].out_channels == small.features[2].conv[2].in_channels < 144
    if arch == 'resnet18':  # residual-coupled channels dead in some members only are kept and reported
        res = plan[plan.layers.str.contains('conv2')]
        assert (res.dead_kept > 0).all() and res.why.str.contains('a residual sum').all()
        assert small.layer1[0].conv1.out_channels == 32 and small.layer1[0].conv2.in_channels == 32

def test_channel_granularity_removes_the_producer():
    torch.manual_seed(0)
    m = trained_bn(small_convnet(8))
    Sparsifier(m, 'channel', layers='3').prune(50)  # input channels of the second conv: the first conv's filters feeding them are unused
    small = compact(m, X)
    assert small[0].out_channels == small[1].num_features == small[3].in_channels == 4
    assert same(small, m)

@pytest.mark.parametrize('round_to', [8, 16])
def test_round_to_keeps_multiples(round_to):
    torch.manual_seed(0)
    m = trained_bn(vgg_cifar(True))
    Sparsifier(m, 'filter').prune(30)
    small = compact(m, X, round_to=round_to)
    outs = [c.out_channels for c in small.modules() if isinstance(c, nn.Conv2d)]
    assert all(o % round_to == 0 for o in outs), outs
    plan = compact_plan(m, X, round_to=round_to)
    assert plan.why.str.contains(f'multiple of {round_to}').any()
    assert same(small, m)

def test_inplace_keeps_module_identity_and_frozen_params():
    m = trained_bn(small_convnet(8))
    Sparsifier(m, 'filter').prune(50)
    conv,bn = m[0],m[1]
    m[4].weight.requires_grad_(False)
    ref = copy.deepcopy(m)
    res = compact(m, X, inplace=True)
    assert res is m and m[0] is conv and m[1] is bn
    assert conv.weight.shape == (4, 3, 3, 3) and bn.running_var.shape == (4,) and m[8].in_features == 8
    assert not m[4].weight.requires_grad and m[0].weight.requires_grad
    assert same(m, ref)

class Cut(nn.Module):
    def forward(self, x): return x.detach()

class NegBlock(nn.Module):
    "Arithmetic in `forward` that the dead-channel analysis cannot see through"
    def __init__(self): super().__init__(); self.a,self.b = nn.Conv2d(3, 8, 3, padding=1),nn.Conv2d(8, 4, 3, padding=1)
    def forward(self, x): return self.b(torch.relu(-self.a(x))).mean((2, 3))

def test_bad_input_is_named_and_changes_nothing():
    m = small_convnet(8)
    Sparsifier(m, 'weight').prune(50)
    with pytest.raises(ValueError, match="granularity='filter' or 'channel'"): compact(m, X)
    m = small_convnet(8)
    sp = Sparsifier(m, 'kernel').prune(50)
    with pytest.raises(ValueError, match="'kernel'.*granularity='filter' or 'channel'"): compact(m, X, sparsifier=sp)
    m = small_convnet(8)
    Sparsifier(m, 'filter').prune(50)
    snap = snapshot(m)
    with pytest.raises(ValueError, match=r"layer '0' \(Conv2d\)"): compact(m, torch.randn(2, 5, 32, 32))
    with pytest.raises(ValueError, match=r"layer '7' \(Linear\)"): compact(nn.Sequential(*m[:7], nn.Linear(7, 10)), X)
    with pytest.raises(TypeError, match='tuple of tensors'): compact(m, 'x')
    with pytest.raises(TypeError, match='nn.Module'): compact(m.state_dict(), X)
    for r in (0, 2.5):
        with pytest.raises(ValueError, match='round_to must be an int >= 1 or None'): compact(m, X, round_to=r)
    with pytest.raises(TypeError, match='round_to must be an int'): compact(m, X, round_to=True)
    with pytest.raises(ValueError, match="could not trace layer '0'"): compact(nn.Sequential(*m[:3], Cut(), *m[3:]), X, inplace=True)
    assert unchanged(m, snap)
    neg = NegBlock()
    snap = snapshot(neg)
    with pytest.raises(RuntimeError, match='differs'): compact(neg, X, inplace=True)
    assert unchanged(neg, snap) and neg.a.out_channels == 8

def test_live_inputs_never_calls_a_lucky_zero_dead():
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1))
    with torch.no_grad(): m[0].bias.fill_(-100.)  # this ReLU never fires on normal inputs, but it is not dead
    assert live_inputs(m, X)['2'].all()
    with torch.no_grad(): m[0].weight[1] = 0; m[0].bias[1] = 0
    assert live_inputs(m, X)['2'].tolist() == [True, False, True, True]

def test_learner_compact_then_every_parameter_trains():
    learn = make_learner(small_convnet(16), n_train=256)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=SparsifyCallback(50, 'filter'))
    n0 = n_params(learn.model)
    plan = learn.compact()
    assert plan.removed.sum() == 8 + 16 and n_params(learn.model) < n0/2
    params = list(learn.model.parameters())
    assert [id(p) for pg in learn.opt.param_lists for p in pg] == [id(p) for p in params]  # the optimizer holds the new parameters, all of them
    assert learn.sparsifier.model is learn.model and all(l.weight is l.module.weight for l in learn.sparsifier.layers)
    old = [p.detach().clone() for p in params]
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert all(not torch.equal(a, p) for a,p in zip(old, params))  # every parameter moved
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=SparsifyCallback(50, 'filter'))  # and pruning goes on over the smaller model
    assert abs(learn.sparsifier.sparsity() - 50) < 1

# --- shrinking while training: learn.compact's optimizer state, CompactCallback ---

from fastai.callback.core import Callback
from fastai.optimizer import SGD
from fastprune.compact import CompactCallback, move_optimizer

class LossLog(Callback):
    "Every training loss of a fit, and the step after which the model shrank"
    order = 100
    def before_fit(self): self.seen,self.shrunk_at,self._n = [],None,None
    def after_loss(self): self.seen.append(self.loss.item())
    def after_step(self):
        n = n_params(self.learn.model)
        if self._n is not None and n < self._n and self.shrunk_at is None: self.shrunk_at = len(self.seen)
        self._n = n

def fit_small(cbs, epochs=4, seed=0, opt_func=None):
    torch.manual_seed(seed)
    learn = make_learner(small_convnet(16), n_train=384, seed=seed, opt_func=opt_func)  # the same weights and batches for the same seed
    rec = LossLog()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(epochs, 1e-2, cbs=cbs + [rec])
    return learn, rec

@pytest.mark.parametrize('opt', ['adam', 'sgd'])
def test_learn_compact_carries_the_optimizer_state(opt):
    learn = make_learner(small_convnet(16), n_train=256, opt_func=None if opt == 'adam' else partial(SGD, mom=0.9))
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=SparsifyCallback(50, 'filter'))
    names = dict(learn.model.named_parameters())
    before = {n: {k: v.clone() if isinstance(v, torch.Tensor) else v for k,v in learn.opt.state[p].items()} for n,p in names.items()}
    assert any(isinstance(v, torch.Tensor) and v.abs().sum() > 0 for st in before.values() for v in st.values())
    w0 = {n: p.detach().clone() for n,p in names.items()}
    learn.compact()
    for n,p in learn.model.named_parameters():
        st,old = learn.opt.state[p],w0[n].flatten().tolist()
        once = {a: i for i,a in enumerate(old) if old.count(a) == 1}
        new = p.detach().flatten().tolist()
        assert all(a in once for a in new), n  # every kept entry is one old entry, with its value
        idx = torch.tensor([once[a] for a in new], dtype=torch.long)
        assert set(st) == set(before[n]), n
        for k,v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape: assert torch.equal(v.flatten(), before[n][k].flatten()[idx]), (n, k)  # its state, cut alike
            elif isinstance(v, torch.Tensor): assert torch.equal(v, before[n][k]), (n, k)
            else: assert v == before[n][k], (n, k)

def test_move_optimizer_cuts_state_by_index():
    p,q = nn.Parameter(torch.arange(6.).view(2, 3)),nn.Parameter(torch.zeros(2, 2))
    opt = SGD([p], lr=0.1, mom=0.9)
    opt.state[p] = {'grad_avg': torch.arange(6.).view(2, 3)*10, 'step': 3}
    move_optimizer(opt, [(p, q, torch.tensor([0, 2, 3, 5]))])
    assert opt.param_lists[0][0] is q and p not in opt.state
    assert opt.state[q]['grad_avg'].tolist() == [[0., 20.], [30., 50.]] and opt.state[q]['step'] == 3

def test_compact_callback_trains_the_smaller_network_like_the_masked_one():
    masked,ra = fit_small([SparsifyCallback(50, 'filter', end_pct=0.5)])
    cc = CompactCallback()
    small,rb = fit_small([SparsifyCallback(50, 'filter', end_pct=0.5), cc])
    assert len(cc.cuts) == 1 and rb.shrunk_at is not None and n_params(small.model) < 0.5*n_params(masked.model)
    k = rb.shrunk_at
    assert ra.seen[:k] == rb.seen[:k]  # identical until the cut
    a,b = torch.tensor(ra.seen[k:k+10]),torch.tensor(rb.seen[k:k+10])
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a, b)  # the same function and optimizer state: the same losses after it
    assert small.model[0].out_channels == 8 and small.model[3].out_channels == 16
    assert abs(small.sparsifier.sparsity() - masked.sparsifier.sparsity()) < 25  # counted against the original weights (cut inputs count too)
    assert [id(p) for pg in small.opt.param_lists for p in pg] == [id(p) for p in small.model.parameters()]
    old = [p.detach().clone() for p in small.model.parameters()]
    with small.no_bar(), small.no_logging(): small.fit(1, 1e-3)
    assert all(not torch.equal(a, p) for a,p in zip(old, small.model.parameters()))  # every kept parameter still trains

def test_compact_callback_every_event_and_save_load(tmp_path):
    cc = CompactCallback(every_event=True)
    learn,rec = fit_small([SparsifyCallback(50, 'filter', end_pct=0.5, min_delta=10), cc], epochs=3)
    assert len(cc.cuts) >= 3 and all(c['params_after'] <= c['params_before'] for c in cc.cuts)
    assert learn.model[0].out_channels == 8 and learn.model[3].out_channels == 16  # targets count in the filters the layers had
    assert all(abs(r - 50) < 1e-6 for r in learn.sparsifier.reached())
    learn.path = tmp_path
    learn.save('small')
    x = torch.randn(2, 3, 16, 16)
    learn.model.eval(); y = learn.model(x)
    with torch.no_grad():
        for p in learn.model.parameters(): p.zero_()
    learn.load('small')
    learn.model.eval()
    assert torch.equal(learn.model(x), y)

def test_compact_callback_refuses_what_it_cannot_cut():
    learn = make_learner(small_convnet(16), n_train=128)
    snap = snapshot(learn.model)
    for cbs,msg in [([SparsifyCallback(50, 'weight'), CompactCallback()], "granularity 'weight'.*'filter' or 'channel'"),
                    ([SparsifyCallback(50, '2:4'), CompactCallback()], "granularity '2:4'"),
                    ([CompactCallback()], 'has 0'),
                    ([SparsifyCallback(50, 'filter', lth=True), CompactCallback()], 'lottery tickets')]:
        with pytest.raises(ValueError, match=msg):
            with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=cbs)
        assert unchanged(learn.model, snap)
    for bad,err in [(dict(every_event=1), TypeError), (dict(round_to=0), ValueError)]:
        with pytest.raises(err): CompactCallback(**bad)

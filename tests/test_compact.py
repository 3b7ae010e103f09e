"Compaction of structured masks (exact, on VGG16, VGG16-BN, MobileNetV2, ResNet-18), learn.compact, save_sparse, N:M, ONNX, accounting"
import copy, io, math, warnings
import pytest, torch
from torch import nn
from torchvision import models as tvm
from fastprune.all import *
from fastprune.compact import compact, compact_plan, live_inputs, save_sparse, load_sparse, file_size, export_onnx, compare_models, to_semi_structured
from conftest import make_learner, small_convnet

warnings.filterwarnings('ignore', category=FutureWarning)
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

def trained_bn(model, seed=0):
    "BatchNorm statistics and affine parameters like a trained network's, so that a wrong cut shows in the outputs"
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t,lo,hi in [(m.running_mean,-1,1), (m.running_var,.5,2), (m.weight,.5,1.5), (m.bias,-.5,.5)]: t.copy_(torch.rand(t.shape, generator=g)*(hi-lo)+lo)
    return model

def vgg_cifar(bn): return nn.Sequential((tvm.vgg16_bn if bn else tvm.vgg16)(num_classes=10).features, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))
def n_params(m): return sum(p.numel() for p in m.parameters())
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
        assert (res.dead_kept > 0).all() and res.why.str.contains('dead in some layers').all()
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
    for r in (0, 2.5, True):
        with pytest.raises(ValueError, match='round_to'): compact(m, X, round_to=r)
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

def test_save_sparse_is_bit_exact_and_small(tmp_path):
    m = tvm.resnet18(num_classes=10)
    Sparsifier(m, 'weight', layer_type=(nn.Conv2d, nn.Linear)).prune(80)
    with torch.no_grad(): m.fc.weight[0, :3] = torch.tensor([-0., float('nan'), float('inf')])
    fn = tmp_path/'m.pth'
    n = save_sparse(m, fn)
    assert n == fn.stat().st_size and n < file_size(m)/3
    sd = load_sparse(fn)
    for k,v in m.state_dict().items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape
        assert torch.equal(sd[k].view(torch.uint8), v.view(torch.uint8)) if v.is_floating_point() else torch.equal(sd[k], v), k
    fresh = load_sparse(fn, model=tvm.resnet18(num_classes=10))
    assert torch.equal(fresh.layer1[0].conv1.weight, m.layer1[0].conv1.weight)
    buf = io.BytesIO(); torch.save({'a': torch.zeros(3)}, buf); buf.seek(0)
    with pytest.raises(ValueError, match='save_sparse'): load_sparse(buf)
    with pytest.raises(TypeError, match='state dict'): save_sparse([1, 2], io.BytesIO())

def nm_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

@pytest.mark.parametrize('nm', ['2:4', '1:4', '2:8'])
def test_nm_masks_are_exact_and_rising_targets_keep_the_pattern(nm):
    n,mm = map(int, nm.split(':'))
    g = get_granularity(nm)
    m = nm_net()
    sp = Sparsifier(m, nm, criteria='random', layer_type=(nn.Conv2d, nn.Linear), exclude='0')
    for s in (0.3*g.max_sparsity, 0.7*g.max_sparsity, g.max_sparsity):
        sp.prune(s)
        for l in sp.layers:
            pruned = (~l.mask).movedim(1, -1).reshape(-1, mm).sum(1)
            assert pruned.max() <= mm - n                      # never more than M-N pruned in a block, while ramping
    for l in sp.layers: assert ((~l.mask).movedim(1, -1).reshape(-1, mm).sum(1) == mm - n).all()  # exactly N of M kept at the end
    assert abs(sp.sparsity() - g.max_sparsity) < 1e-6

def test_nm_bad_use_is_refused():
    m = nm_net()
    with pytest.raises(ValueError, match="does not fit layer '0'.*multiple of 4"): Sparsifier(m, '2:4', layer_type=(nn.Conv2d, nn.Linear))
    with pytest.raises(ValueError, match="context='local'"): Sparsifier(m, '2:4', 'global', exclude='0')
    with pytest.raises(ValueError, match='at most 50 %'): Sparsifier(m, '2:4', exclude='0').prune(60)
    with pytest.raises(ValueError, match='0 < N < M'): get_granularity('4:4')

def test_nm_through_a_fit():
    learn = make_learner(nm_net(), n_train=128)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3, cbs=SparsifyCallback(50, '2:4', layer_type=(nn.Conv2d, nn.Linear), exclude='0'))
    g = get_granularity('2:4')
    assert all(g.satisfied(l.weight) for l in learn.sparsifier.layers) and abs(learn.sparsifier.sparsity() - 50) < 1e-6

@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0), reason='semi-structured sparsity needs an Ampere or newer GPU')
def test_to_semi_structured_on_gpu():
    lin = nn.Sequential(nn.Linear(128, 128)).half().cuda()
    Sparsifier(lin, '2:4', layer_type=nn.Linear).prune(50)
    x = torch.randn(64, 128, dtype=torch.half, device='cuda')
    ref = lin(x)
    to_semi_structured(lin)
    assert type(lin[0].weight.data).__name__.startswith('SparseSemiStructured')
    assert ((lin(x) - ref).abs().max() / ref.abs().max()).item() < 1e-2

def test_to_semi_structured_refuses_cpu_and_dense():
    lin = nn.Sequential(nn.Linear(64, 64))
    with pytest.raises(ValueError, match='2:4 pattern'): to_semi_structured(lin, layers=['0'])
    Sparsifier(lin, '2:4', layer_type=nn.Linear).prune(50)
    with pytest.raises(ValueError, match='CUDA'): to_semi_structured(lin)

def test_onnx_export_matches_onnxruntime(tmp_path):
    pytest.importorskip('onnxruntime')
    import onnxruntime as ort
    torch.manual_seed(0)
    m = trained_bn(tvm.mobilenet_v2(num_classes=10))
    Sparsifier(m, 'filter').prune(50)
    small = compact(m, X)
    fn = export_onnx(small, X, tmp_path/'m.onnx')
    x = torch.randn(3, 3, 32, 32)
    got = ort.InferenceSession(str(fn), providers=['CPUExecutionProvider']).run(None, {'input0': x.numpy()})[0]
    small.eval()
    with torch.no_grad(): ref = small(x)
    assert ((torch.from_numpy(got) - ref).abs().max() / ref.abs().max()).item() < 1e-4

def test_compare_models_accounts_for_each_version():
    m = trained_bn(vgg_cifar(True))
    dense = copy.deepcopy(m)
    Sparsifier(m, 'filter').prune(50)
    df = compare_models(X[:1], dense=dense, masked=m, compacted=compact(m, X))
    assert df.loc['masked', 'flops'] == df.loc['dense', 'flops'] and df.loc['masked', 'params'] == df.loc['dense', 'params']
    assert df.loc['masked', 'nonzero'] < 0.55*df.loc['dense', 'nonzero'] and df.loc['masked', 'sparse_file'] < 0.6*df.loc['dense', 'file']
    assert df.loc['compacted', 'flop_ratio'] > 3.5 and df.loc['compacted', 'file_ratio'] > 3.5
    assert df.loc['compacted', 'flops_nonzero'] <= df.loc['compacted', 'flops'] < df.loc['dense', 'flops']/3.5

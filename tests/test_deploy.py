"What a pruned model ships as: save_sparse bit for bit, N:M patterns (and 2:4 on GPUs), ONNX files checked in onnxruntime, accounting"
import copy, io, warnings
import pytest, torch
from torch import nn
from torchvision import models as tvm
from fastprune.all import *
from fastprune.compact import compact
from fastprune.export import save_sparse, load_sparse, file_size, export_onnx, compare_models, to_semi_structured
from conftest import make_learner, trained_bn, vgg_cifar

warnings.filterwarnings('ignore', category=FutureWarning)
warnings.filterwarnings('ignore', message='compact removes')  # what couplings keep: tested in test_zoo.py
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

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

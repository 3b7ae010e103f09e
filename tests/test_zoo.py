"The compaction zoo: common timm and torchvision networks, random init, pruned at 'filter' granularity and compacted: the same outputs and fewer parameters, or a warning that names what keeps the dead channels"
import warnings
import pytest, torch, timm
from torch import nn
from torchvision import models as tvm
from fastprune.all import *
from fastprune.compact import compact
from conftest import trained_bn, n_params

warnings.filterwarnings('ignore', category=FutureWarning)

def tm(name, **kw): return lambda: timm.create_model(name, pretrained=False, num_classes=10, **kw)

# name: (factory, input size, most parameters left after compaction at 50 % filters, the couplings the warning must name)
zoo = {
    'resnet18':            (lambda: tvm.resnet18(num_classes=10), 32, .50, ['a residual sum']),
    'mobilenet_v2':        (lambda: tvm.mobilenet_v2(num_classes=10), 32, .45, ['a residual sum']),
    'mobilenet_v3_small':  (lambda: tvm.mobilenet_v3_small(num_classes=10), 32, .50, []),  # squeeze-and-excitation, hardswish
    'efficientnet_b0':     (tm('efficientnet_b0'), 32, .45, []),  # squeeze-and-excitation, SiLU
    'regnety_002':         (tm('regnety_002'), 32, .95, ['a grouped conv']),  # grouped convs, squeeze-and-excitation
    'resnext26ts':         (tm('resnext26ts'), 32, .90, ['a grouped conv']),
    'ghostnet_100':        (tm('ghostnet_100'), 32, .50, []),  # concatenation of a layer with a function of it, then a slice
    'convnext_atto':       (tm('convnext_atto'), 32, .60, ['a LayerNorm over channels']),
    'densenet121':         (lambda: tvm.densenet121(num_classes=10), 32, .60, ['a concatenation or slice']),
    'squeezenet1_0':       (lambda: tvm.squeezenet1_0(num_classes=10), 64, .30, []),  # concatenations
    'googlenet':           (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=True), 32, .30, []),
    'mixnet_s':            (tm('mixnet_s'), 32, .85, ['coupled with a split into fixed sizes']),  # mixed kernels: channel splits
    'efficientvit_b0':     (tm('efficientvit_b0'), 32, .60, []),  # attention over reshaped channels
    'vit_tiny':            (tm('vit_tiny_patch16_224', img_size=32), 32, 1., ['a LayerNorm over channels']),
}

@pytest.mark.parametrize('name', list(zoo))
def test_zoo_compacts_exactly(name):
    factory,size,most,couplings = zoo[name]
    torch.manual_seed(0)
    m = trained_bn(factory()).eval()
    x = torch.randn(2, 3, size, size)
    sp = Sparsifier(m, 'filter').prune(50)
    ref = {k: v.clone() for k,v in m.state_dict().items()}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        small = compact(m, x, sparsifier=sp)
    msgs = [str(o.message) for o in w if issubclass(o.category, UserWarning) and 'compact removes' in str(o.message)]
    assert all(torch.equal(v, ref[k]) for k,v in m.state_dict().items())  # the original is untouched
    small.eval()
    with torch.no_grad():
        for xs in (x, torch.randn_like(x)):
            a,b = small(xs),m(xs)
            assert ((a - b).abs().max()/b.abs().max()).item() < 1e-4
    ratio = n_params(small)/n_params(m)
    assert ratio <= most, ratio
    if ratio == 1.: assert msgs, 'nothing was cut, and nothing was said'
    for c in couplings: assert msgs and c in msgs[0], (c, msgs)

def test_vit_compacts_its_mlps_when_linear_layers_are_pruned():
    torch.manual_seed(0)
    m = zoo['vit_tiny'][0]().eval()
    x = torch.randn(2, 3, 32, 32)
    Sparsifier(m, 'filter').prune(50)
    with pytest.warns(UserWarning, match=r"layer_type=\(nn.Conv2d, nn.Linear\)"): compact(m, x)
    m = zoo['vit_tiny'][0]().eval()
    Sparsifier(m, 'filter', layer_type=(nn.Conv2d, nn.Linear), exclude=['head', '*qkv', '*proj', '*fc2']).prune(50)
    small = compact(m, x)
    assert n_params(small) < 0.75*n_params(m)
    assert small.blocks[0].mlp.fc1.out_features == small.blocks[0].mlp.fc2.in_features == 384

def test_shufflenet_is_refused_by_name():
    m = tvm.shufflenet_v2_x0_5(num_classes=10)
    Sparsifier(m, 'filter').prune(50)
    with pytest.raises(ValueError, match='Torch-Pruning could not trace the model.*ShuffleNetV2'): compact(m, torch.randn(2, 3, 32, 32))

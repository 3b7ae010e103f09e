"Every bad argument raises ValueError or TypeError, with a message naming what was wrong and what is allowed, and changes nothing"
import math, pytest, torch
from torch import nn
from fastprune.all import *
from conftest import make_learner, small_convnet

ctor_cases = [
    (dict(sparsity=120), ValueError, r'\[0, 100\]'),
    (dict(sparsity=-5), ValueError, r'\[0, 100\]'),
    (dict(sparsity=math.nan), ValueError, r'\[0, 100\]'),
    (dict(sparsity='80'), TypeError, 'percentage'),
    (dict(sparsity=None), TypeError, 'percentage'),
    (dict(sparsity={}), ValueError, 'empty dict'),
    (dict(sparsity={'conv*': 150}), ValueError, r"sparsity\['conv\*'\].*\[0, 100\]"),
    (dict(sparsity={3: 50}), TypeError, 'dict keys'),
    (dict(sparsity=50, granularity='row'), ValueError, "unknown granularity 'row'.*'channel', 'filter', 'kernel', 'vector', 'weight'"),
    (dict(sparsity=50, granularity=2), TypeError, 'granularity must be'),
    (dict(sparsity=50, context='layerwise'), ValueError, "unknown context 'layerwise'.*'global', 'local'"),
    (dict(sparsity=50, criteria='l1'), ValueError, "unknown criterion 'l1'.*'large_final'"),
    (dict(sparsity=50, schedule='cubic'), ValueError, "unknown schedule 'cubic'.*'agp'"),
    (dict(sparsity=50, schedule=5), TypeError, r'f\(start, end, pos\)'),
    (dict(sparsity=50, start_pct=0.7, end_pct=0.3), ValueError, 'start_pct < end_pct'),
    (dict(sparsity=50, start_pct=0.5, end_pct=0.5), ValueError, 'start_pct < end_pct'),
    (dict(sparsity=50, end_pct=1.5), ValueError, r'end_pct.*\[0, 1\]'),
    (dict(sparsity=50, update_every=0), ValueError, 'update_every must be an int >= 1'),
    (dict(sparsity=50, min_delta=-1), ValueError, 'min_delta must be a number of percentage points'),
    (dict(sparsity=50, min_delta='5'), TypeError, "min_delta must be .* got str: '5'"),
    (dict(sparsity=50, rewind_epoch=-1), ValueError, 'rewind_epoch must be an int >= 0'),
    (dict(sparsity=50, normalize='max'), ValueError, "unknown normalize 'max'"),
    (dict(sparsity=50, layer_type='Conv2d'), TypeError, 'layer_type must be an nn.Module subclass'),
    (dict(sparsity={'a': 50}, context='global'), ValueError, 'needs context="local"'),
    (dict(sparsity=50, layers=3), TypeError, 'layers must be a layer name or glob pattern'),
]

@pytest.mark.parametrize('kw,exc,msg', ctor_cases, ids=[str(c[0]) for c in ctor_cases])
def test_constructor_rejects(kw, exc, msg):
    with pytest.raises(exc, match=msg): SparsifyCallback(**kw)

fit_cases = [
    (dict(sparsity={'head.*': 50}), ValueError, r"no selected layer matches 'head\.\*'.*'conv1\.0'"),
    (dict(sparsity=50, layers='body.*'), ValueError, r"no layer matches 'body\.\*'.*'conv1\.0'"),
    (dict(sparsity=50, exclude='nothing_here'), ValueError, r"no layer matches 'nothing_here'"),
    (dict(sparsity=50, layer_type=nn.LSTM), ValueError, "no layer of type.*LSTM"),
    (dict(sparsity=50, granularity='kernel', layer_type=nn.Linear), ValueError, r"'kernel' does not fit layer 'fc'.*\['channel', 'filter', 'weight'\]"),
    (dict(sparsity=50, lth=True, rewind_epoch=1), ValueError, 'rewind point'),
    (dict(sparsity=50, layers='conv1.*', exclude='conv1.*'), ValueError, 'leave no layer to prune'),
]

@pytest.mark.parametrize('kw,exc,msg', fit_cases, ids=[str(c[0]) for c in fit_cases])
def test_before_fit_rejects_and_leaves_model_untouched(kw, exc, msg):
    learn = make_learner(n_train=128)
    before = {k: v.clone() for k,v in learn.model.state_dict().items()}
    with pytest.raises(exc, match=msg): learn.fit(1, cbs=SparsifyCallback(**kw))
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)

def test_depthwise_channel_granularity_rejected():
    from torchvision.models import mobilenet_v2
    m = mobilenet_v2(num_classes=10)
    with pytest.raises(ValueError, match=r"'channel' does not fit layer 'features.1.conv.0.0'.*grouped.*\['filter', 'kernel', 'vector', 'weight'\]"): Sparsifier(m, 'channel')

def test_nan_weights_at_pruning_time():
    m = small_convnet()
    with torch.no_grad(): m[3].weight[0,0,0,0] = math.inf
    before = {k: v.clone() for k,v in m.state_dict().items()}
    sp = Sparsifier(m)
    with pytest.raises(ValueError, match="layer '3' contain NaN or inf"): sp.prune(50)
    assert all(torch.equal(before[k], v, ) if not v.isnan().any() else True for k,v in m.state_dict().items())
    assert all(l.mask is None for l in sp.layers)

def test_sparsifier_rejects():
    m = small_convnet()
    with pytest.raises(TypeError, match='model must be an nn.Module'): Sparsifier('resnet')
    with pytest.raises(ValueError, match='no layer of type'): Sparsifier(nn.Sequential(nn.ReLU(), nn.Flatten()))
    with pytest.raises(ValueError, match=r'one value per selected layer \(2\)'): Sparsifier(m).prune([10, 20, 30])
    with pytest.raises(ValueError, match=r'\[0, 100\]'): Sparsifier(m).prune(101)
    with pytest.raises(ValueError, match='needs context="local"'): Sparsifier(m, context='global').prune({'0': 50})
    with pytest.raises(ValueError, match="masks for unknown layers \\['nope'\\]"): Sparsifier(m).load_state_dict({'nope': torch.ones(1)})
    with pytest.raises(ValueError, match='needs gradients'): Sparsifier(m, criteria='taylor').prune(50)

def test_small_sparsity_warns_about_units():
    with pytest.warns(UserWarning, match=r'means 0\.8 %, not 80 %'): SparsifyCallback(0.8)

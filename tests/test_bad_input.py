"Every wrong use raises ValueError or TypeError, with a message naming what was wrong and what is allowed, and leaves the model bit-identical"
import math, pytest, torch
from torch import nn
from fastai.callback.schedule import SchedCos
from fastprune.all import *
from fastprune.criteria import criteria
from fastprune.granularity import granularities
from conftest import make_learner, small_convnet

def _cb(**kw): return lambda learn: SparsifyCallback(**kw)
def _fit(**kw):
    def f(learn):
        with learn.no_bar(): learn.fit(1, 1e-3, cbs=SparsifyCallback(**kw))
    return f
def _sp(*args, then=None, **kw):
    def f(learn):
        sp = Sparsifier(learn.model, *args, **kw)
        if then is not None: then(sp)
    return f
def _poison(name, v):
    "Write `v` into one weight of layer `name` before the wrong use: the model's state to compare against"
    def f(learn):
        with torch.no_grad(): dict(learn.model.named_modules())[name].weight[0,0,0,0] = v
    return f
def _freeze(name):
    def f(learn): dict(learn.model.named_modules())[name].weight.requires_grad_(False)
    return f
def _only(*ms): return lambda learn: setattr(learn, 'model', nn.Sequential(*ms))
def _depthwise(learn): learn.model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, groups=6), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 10))

# id: (set-up or None, wrong use, exception, regex matching what was wrong *and* what is allowed)
cases = {
    # wrong ranges
    'sparsity above 100':       (None, _cb(sparsity=120), ValueError, r'sparsity must be a percentage in \[0, 100\], got 120'),
    'negative sparsity':        (None, _cb(sparsity=-5), ValueError, r'sparsity must be a percentage in \[0, 100\], got -5'),
    'NaN sparsity':             (None, _cb(sparsity=math.nan), ValueError, r'sparsity must be a percentage in \[0, 100\], got nan'),
    'dict value above 100':     (None, _cb(sparsity={'conv*': 150}), ValueError, r"sparsity\['conv\*'\] must be a percentage in \[0, 100\], got 150"),
    'start_sparsity above 100': (None, _cb(sparsity=50, start_sparsity=200), ValueError, r'start_sparsity must be a percentage in \[0, 100\], got 200'),
    'end_pct above 1':          (None, _cb(sparsity=50, end_pct=1.5), ValueError, r'end_pct must be a fraction of training in \[0, 1\], got 1.5'),
    'negative start_pct':       (None, _cb(sparsity=50, start_pct=-0.1), ValueError, r'start_pct must be a fraction of training in \[0, 1\], got -0.1'),
    'update_every 0':           (None, _cb(sparsity=50, update_every=0), ValueError, r'update_every must be an int >= 1 or None, got 0'),
    'update_every float':       (None, _cb(sparsity=50, update_every=2.5), ValueError, r'update_every must be an int >= 1 or None, got 2.5'),
    'negative min_delta':       (None, _cb(sparsity=50, min_delta=-1), ValueError, r'min_delta must be a number of percentage points in \[0, 100\], got -1'),
    'negative rewind_epoch':    (None, _cb(sparsity=50, rewind_epoch=-1), ValueError, r'rewind_epoch must be an int >= 0, got -1'),
    'negative rewind_iter':     (None, _cb(sparsity=50, rewind_iter=-3), ValueError, r'rewind_iter must be an int >= 0 or None, got -3'),
    'Iterative with 0 steps':   (None, lambda learn: Iterative(0), ValueError, r'whole number of steps n >= 1, got 0'),
    # windows out of order
    'window reversed':          (None, _cb(sparsity=50, start_pct=0.7, end_pct=0.3), ValueError, r'start_pct < end_pct, got start_pct=0.7 and end_pct=0.3'),
    'window empty':             (None, _cb(sparsity=50, start_pct=0.5, end_pct=0.5), ValueError, r'start_pct < end_pct, got start_pct=0.5 and end_pct=0.5'),
    # wrong types
    'sparsity as a string':     (None, _cb(sparsity='80'), TypeError, r"sparsity must be a percentage in \[0, 100\] or a dict .*, got str: '80'"),
    'sparsity None':            (None, _cb(sparsity=None), TypeError, r'sparsity must be a percentage in \[0, 100\] or a dict .*, got NoneType'),
    'sparsity True':            (None, _cb(sparsity=True), TypeError, r'sparsity must be a percentage in \[0, 100\] or a dict .*, got bool'),
    'dict key not a name':      (None, _cb(sparsity={3: 50}), TypeError, r'dict keys must be layer names or glob patterns, got 3'),
    'dict start_sparsity':      (None, _cb(sparsity=50, start_sparsity={'0': 10}), TypeError, r'start_sparsity must be one percentage, not a dict'),
    'granularity a number':     (None, _cb(sparsity=50, granularity=2), TypeError, r'granularity must be a name or a Granularity, got int: 2'),
    'criteria a function':      (None, _cb(sparsity=50, criteria=abs), TypeError, r'criteria must be a name or a Criterion, got builtin_function_or_method'),
    'schedule a number':        (None, _cb(sparsity=50, schedule=5), TypeError, r'schedule must be a name or a function f\(start, end, pos\), got int: 5'),
    'min_delta a string':       (None, _cb(sparsity=50, min_delta='5'), TypeError, r"min_delta must be a number of percentage points in \[0, 100\], got str: '5'"),
    'layer_type a string':      (None, _cb(sparsity=50, layer_type='Conv2d'), TypeError, r"layer_type must be an nn.Module subclass or a tuple of them \(e.g. nn.Conv2d\), got 'Conv2d'"),
    'layers a number':          (None, _cb(sparsity=50, layers=3), TypeError, r'layers must be a layer name or glob pattern, or a list of them, got 3'),
    'exclude numbers':          (None, _cb(sparsity=50, exclude=[1, 2]), TypeError, r'exclude must be a layer name or glob pattern, or a list of them, got \[1, 2\]'),
    'seed a float':             (None, _cb(sparsity=50, seed=1.5), TypeError, r'seed must be an int, got 1.5'),
    'model a string':           (None, lambda learn: Sparsifier('resnet'), TypeError, r'model must be an nn.Module, got str'),
    'register a name':          (None, lambda learn: register_granularity('rows'), TypeError, r'register_granularity expects a Granularity, got str'),
    'register a function':      (None, lambda learn: register_criterion(abs), TypeError, r'register_criterion expects a Criterion, got builtin_function_or_method'),
    # unknown names
    'unknown granularity':      (None, _cb(sparsity=50, granularity='row'), ValueError, r"unknown granularity 'row': choose one of \[.*'channel', 'filter', 'kernel', 'vector', 'weight'\]"),
    'unknown context':          (None, _cb(sparsity=50, context='layerwise'), ValueError, r"unknown context 'layerwise': choose one of \['global', 'local'\]"),
    'unknown criterion':        (None, _cb(sparsity=50, criteria='l1'), ValueError, r"unknown criterion 'l1': choose one of \['large_final', 'large_init', 'movement', 'random', 'taylor', 'wanda'\]"),
    'unknown schedule':         (None, _cb(sparsity=50, schedule='cubic'), ValueError, r"unknown schedule 'cubic': choose one of \['agp', 'cos', .*\] or pass a function f\(start, end, pos\)"),
    'unknown normalize':        (None, _cb(sparsity=50, normalize='max'), ValueError, r"unknown normalize 'max': choose one of \['lamp', 'mean', 'none'\]"),
    'unknown granularity (Sparsifier)': (None, _sp('row'), ValueError, r"unknown granularity 'row': choose one of \["),
    'registered twice':         (None, lambda learn: register_granularity(Granularity('weight', lambda nd: ())), ValueError, r"granularity 'weight' is already registered: pass overwrite=True to replace it"),
    # empty dicts, dicts and patterns naming missing layers
    'empty dict':               (None, _cb(sparsity={}), ValueError, r'sparsity is an empty dict: map layer names \(glob patterns allowed\) to percentages in \[0, 100\]'),
    'dict names no layer':      (None, _fit(sparsity={'head.*': 50}), ValueError, r"no selected layer matches 'head\.\*' in the sparsity dict: the selected layers are '0', '3'"),
    'layers names no layer':    (None, _fit(sparsity=50, layers='body.*'), ValueError, r"no layer matches 'body\.\*': the layers of type \['Conv2d'\] are '0', '3'"),
    'exclude names no layer':   (None, _fit(sparsity=50, exclude='nothing_here'), ValueError, r"no layer matches 'nothing_here': the layers of type \['Conv2d'\] are '0', '3'"),
    'layers minus exclude empty': (None, _fit(sparsity=50, layers='*', exclude=['0', '3']), ValueError, r"layers=\['\*'\] and exclude=\['0', '3'\] leave no layer to prune among '0', '3'"),
    'dict with global context': (None, _cb(sparsity={'0': 50}, context='global'), ValueError, r'a dict of per-layer sparsities needs context="local"'),
    'dict with global (Sparsifier)': (None, _sp(context='global', then=lambda sp: sp.prune({'0': 50})), ValueError, r'a dict of per-layer sparsities needs context="local"'),
    'masks for unknown layers': (None, _sp(then=lambda sp: sp.load_state_dict({'nope': torch.ones(1)})), ValueError, r"masks for unknown layers \['nope'\]: the selected layers are '0', '3'"),
    'mask of the wrong shape':  (None, _sp(then=lambda sp: sp.load_state_dict({'0': torch.ones(3)})), ValueError, r"mask for '0' has shape \(3,\), expected \(8, 3, 3, 3\)"),
    'list of the wrong length': (None, _sp(then=lambda sp: sp.prune([10, 20, 30])), ValueError, r'a list of sparsities needs one value per selected layer \(2\), got 3'),
    # models with no prunable layer
    'no prunable layer':        (_only(nn.Flatten(), nn.Linear(768, 10)), _fit(sparsity=50), ValueError, r"the model has no layer of type \['Conv2d'\] to prune: pass layer_type=\(nn.Conv2d, nn.Linear\) or the types it uses"),
    'no layer at all (Sparsifier)': (_only(nn.ReLU(), nn.Flatten()), _sp(), ValueError, r"the model has no layer of type \['Conv2d'\] to prune: pass layer_type="),
    'layer type absent':        (None, _fit(sparsity=50, layer_type=nn.LSTM), ValueError, r"no layer of type \['LSTM'\] to prune: pass layer_type="),
    # granularities that don't fit a layer
    'kernel on a linear layer': (None, _fit(sparsity=50, granularity='kernel', layer_type=nn.Linear), ValueError, r"granularity 'kernel' does not fit layer '8' \(its weight has rank 2 .*\); granularities that fit it: \[.*'channel', 'filter', 'weight'\]"),
    'channel on a depthwise conv': (_depthwise, _sp('channel'), ValueError, r"granularity 'channel' does not fit layer '1' \(it is a grouped convolution \(groups=6\).*\); granularities that fit it: \[.*'filter', 'kernel', 'vector', 'weight'\]"),
    'channel on a depthwise conv (fit)': (_depthwise, _fit(sparsity=50, granularity='channel'), ValueError, r"granularity 'channel' does not fit layer '1'.*Exclude it with exclude='1' or choose another granularity"),
    # NaN or inf weights at pruning time
    'inf weight':               (_poison('3', math.inf), _sp(then=lambda sp: sp.prune(50)), ValueError, r"the weights of layer '3' contain NaN or inf: they cannot be ranked for pruning \(the loss may have diverged: lower the learning rate\)"),
    'NaN weight':               (_poison('0', math.nan), _sp('filter', then=lambda sp: sp.prune(50)), ValueError, r"the weights of layer '0' contain NaN or inf"),
    # schedules and criteria that can't work on this fit
    'fastai annealer as schedule': (None, _fit(sparsity=50, schedule=SchedCos(0, 80)), TypeError, r'schedule .* must be a function f\(start, end, pos\) that returns a percentage'),
    'schedule out of range':    (None, _fit(sparsity=50, schedule=lambda s,e,p: 3*e), ValueError, r'the schedule value at pos=0.0000 must be a percentage in \[0, 100\], got 150'),
    'taylor on frozen layers':  (_freeze('0'), _fit(sparsity=50, criteria='taylor'), ValueError, r"criterion 'taylor' ranks weights by their gradients, and the frozen layers '0' get none: unfreeze them, exclude them, or choose a criterion among \['large_final', 'large_init', 'movement', 'random', 'wanda'\]"),
    'taylor without gradients': (None, _sp(criteria='taylor', then=lambda sp: sp.prune(50)), ValueError, r"criterion 'taylor' needs gradients: run a backward pass before pruning"),
    'rewind after first event': (None, _fit(sparsity=50, lth=True, rewind_epoch=1), ValueError, r'the lottery-ticket rewind point \(iteration 1\) comes after the first pruning event \(iteration 0\): choose rewind_epoch/rewind_iter at or before it'),
}

def _state(m): return {k: v.detach().clone() for k,v in m.state_dict().items()}
def _bits(t): return t.detach().contiguous().view(-1).view(torch.uint8)  # NaN == NaN, bit for bit

@pytest.mark.parametrize('case', list(cases))
def test_wrong_use_raises_and_leaves_model_untouched(case):
    setup,use,exc,msg = cases[case]
    learn = make_learner(small_convnet(), n_train=64)
    if setup is not None: setup(learn)
    before,n_reg = _state(learn.model),(len(granularities), len(criteria))
    with pytest.raises(exc, match=msg): use(learn)
    after = _state(learn.model)
    assert after.keys() == before.keys() and all(torch.equal(_bits(before[k]), _bits(after[k])) for k in before)
    assert (len(granularities), len(criteria)) == n_reg and not any(type(m).__name__ == '_SparsityMetric' for m in learn.metrics)

def test_nan_during_fit_stops_before_the_step():
    "Weights that diverge mid-fit stop the fit at the next pruning event, before the optimizer step: the parameters are as they were"
    learn = make_learner(small_convnet(), n_train=64)
    with torch.no_grad(): learn.model[3].weight[0,0,0,0] = math.nan
    before = [_bits(p).clone() for p in learn.model.parameters()]
    with pytest.raises(ValueError, match="the weights of layer '3' contain NaN or inf"):
        with learn.no_bar(): learn.fit(1, 1e-3, cbs=SparsifyCallback(50, schedule='one_shot'))
    # (BatchNorm's running statistics saw the forward pass of that step: fastai runs it before `before_step`)
    assert all(torch.equal(a, _bits(p)) for a,p in zip(before, learn.model.parameters()))

def test_small_sparsity_warns_about_units():
    with pytest.warns(UserWarning, match=r'means 0\.8 %, not 80 %'): SparsifyCallback(0.8)

"The activation-aware criterion `wanda`: its scores, the hooked forward at each pruning event, and bad input"
import pickle, pytest, torch
from torch import nn
from fastai.callback.core import Callback
from fastprune.all import *
from fastprune.criteria import criteria, input_sq_norms
from conftest import make_learner, small_convnet, assert_exact

def mixed_net():
    "A plain, a grouped and a depthwise convolution, and a Linear head"
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1, groups=4), nn.ReLU(),
                         nn.Conv2d(12, 12, 3, padding=1, groups=12), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10))

def inputs_of(model, x)->dict:
    "The input of every Conv2d and Linear of `model` on `x`"
    res,hs = {},[]
    for n,m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)): hs.append(m.register_forward_pre_hook(lambda m,i,n=n: res.__setitem__(n, i[0])))
    with torch.no_grad(): model.eval()(x)
    for h in hs: h.remove()
    return res

def expected_scores(m, x):
    "|w| times the L2 norm of the input channel each weight reads, written out loop by loop"
    w = m.weight.detach()
    if isinstance(m, nn.Linear): return w.abs()*x.reshape(-1, x.shape[-1]).norm(dim=0)[None]
    per = w.shape[1]
    norms = torch.stack([x[:, (o//(w.shape[0]//m.groups))*per + j].norm() for o in range(w.shape[0]) for j in range(per)]).view(w.shape[0], per, 1, 1)
    return w.abs()*norms

@pytest.mark.parametrize('sparsity', [30, 70])
def test_masks_are_the_lowest_wanda_scores_of_each_layer(sparsity):
    torch.manual_seed(0)
    m,x = mixed_net(),torch.randn(16, 3, 8, 8)
    xs = inputs_of(m, x)
    sp = Sparsifier(m, criteria='wanda', layer_type=(nn.Conv2d, nn.Linear), example_inputs=x).prune(sparsity)
    for l in sp.layers:
        s = expected_scores(l.module, xs[l.name]).flatten()
        k = round(sparsity/100*s.numel())
        want = torch.ones(s.numel(), dtype=torch.bool); want[s.argsort()[:k]] = False
        assert torch.equal(l.mask.flatten(), want), l.name
        assert torch.equal(l.weight.flatten() == 0, ~want), l.name

def test_a_dead_input_channel_is_pruned_first_and_magnitude_would_not():
    torch.manual_seed(0)
    m,x = nn.Sequential(nn.Conv2d(4, 6, 1)),torch.randn(8, 4, 5, 5)
    with torch.no_grad(): m[0].weight[:, 2] = 10.  # the largest weights read channel 2, which carries nothing
    x[:, 2] = 0.
    wanda = Sparsifier(m, criteria='wanda', example_inputs=x).prune(25)
    assert not wanda.layers[0].mask[:, 2].any()
    torch.manual_seed(0)
    m2 = nn.Sequential(nn.Conv2d(4, 6, 1))
    with torch.no_grad(): m2[0].weight[:, 2] = 10.
    assert Sparsifier(m2).prune(25).layers[0].mask[:, 2].all()

def test_a_grouped_conv_reads_the_channels_of_its_group():
    gc = nn.Conv2d(6, 4, 1, groups=2)  # filters 0-1 read channels 0-2, filters 2-3 channels 3-5
    x = torch.zeros(1, 6, 2, 2); x[:, 4] = 1.
    n = input_sq_norms(gc, x)[:, :, 0, 0]
    assert torch.equal(n, torch.tensor([[0., 0., 0.], [0., 0., 0.], [0., 4., 0.], [0., 4., 0.]]))

class CountExtraForwards(Callback):
    "Forward passes of the model in eval mode while an epoch trains: the hooked passes of pruning events"
    def before_fit(self): self.n,self.on = 0,False; self.h = self.model.register_forward_hook(self.seen)
    def seen(self, m, i, o): self.n += self.on and not m.training
    def before_train(self): self.on = True
    def after_train(self): self.on = False; self.events = self.learn.sparsifier.events
    def after_fit(self): self.h.remove()

def test_fit_costs_one_extra_forward_per_pruning_event_and_none_per_step():
    learn = make_learner(small_convnet(), n_train=256)
    cb,cnt = SparsifyCallback(60, criteria='wanda', min_delta=10),CountExtraForwards()
    with learn.no_bar(): learn.fit(2, 1e-2, cbs=[cb, cnt])
    n_steps = 2*len(learn.dls.train)
    assert 0 < cnt.events < n_steps and cnt.n == cnt.events
    assert_exact(learn.sparsifier, 60)

def test_global_context_and_filter_granularity():
    torch.manual_seed(0)
    m,x = small_convnet(),torch.randn(8, 3, 8, 8)
    sp = Sparsifier(m, 'weight', 'global', criteria='wanda', example_inputs=x).prune(60)
    assert abs(sp.sparsity() - 60) < 100/sp.n_params
    sp = Sparsifier(small_convnet(), 'filter', criteria='wanda', example_inputs=x).prune(50)
    assert_exact(sp, 50)

def test_a_layer_type_it_does_not_know_fails_at_construction_and_changes_nothing():
    m = nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 3))
    before = {k: v.clone() for k,v in m.state_dict().items()}
    with pytest.raises(ValueError, match=r"scores only layers of type \['Conv2d', 'Linear'\].*'0' is a Conv1d"):
        Sparsifier(m, criteria='wanda', layer_type=nn.Conv1d, example_inputs=torch.randn(2, 3, 9))
    with pytest.raises(ValueError, match=r"\['Conv2d', 'Linear'\]"): Sparsifier.from_config(m, PruneConfig(criteria='wanda', layer_type=nn.Conv1d))
    assert all(torch.equal(v, before[k]) for k,v in m.state_dict().items())

def test_no_batch_is_a_clear_error_and_leaves_weights_and_masks_alone():
    m = small_convnet()
    before = {k: v.clone() for k,v in m.state_dict().items()}
    sp = Sparsifier(m, criteria='wanda')
    with pytest.raises(ValueError, match='example_inputs'): sp.prune(50)
    assert all(l.mask is None for l in sp.layers) and all(torch.equal(v, before[k]) for k,v in m.state_dict().items())
    sp.see_batch((torch.randn(4, 3, 8, 8),))
    assert_exact(sp.prune(50), 50)

def test_pickles_by_name_and_without_the_kept_batch():
    assert pickle.loads(pickle.dumps(get_criterion('wanda'))) is criteria['wanda']
    sp = Sparsifier(small_convnet(), criteria='wanda')
    sp.see_batch((torch.randn(256, 3, 32, 32),))
    sp.prune(40)
    sp2 = pickle.loads(pickle.dumps(sp))
    assert getattr(sp2, '_batch', None) is None  # the kept batch stays behind
    assert sp2.config.criteria is criteria['wanda'] and sp2.sparsity() == sp.sparsity()
    sp2.prune(60)  # on its example input, until it sees a batch again
    assert abs(sp2.sparsity() - 60) < 1

def test_criteria_that_read_no_inputs_keep_their_signature():
    c = Criterion('abs_only', lambda w, init=None, grad=None, generator=None: w.detach().abs())
    assert not c.needs_inputs
    assert_exact(Sparsifier(small_convnet(), criteria=c).prune(50), 50)

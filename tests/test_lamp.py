"Global LAMP without a full sort selects exactly what ranking every layer's `lamp_scores` selects: same masks, event after event"
import copy, math, pytest, torch
from torch import nn
from fastprune.sparsifier import Sparsifier, lamp_scores, lamp_select, normalize_scores, select, smallest

def reference_keep(sp:Sparsifier, t:float, rerank:bool=False)->list:
    "The keep-masks of one global event as fastprune chose them before `lamp_select`: every layer's scores normalised and ranked together, with `select`"
    ls = sp.layers
    scores = [l.weight.detach().abs().flatten() for l in ls]  # large_final at weight granularity
    ns = [normalize_scores(s, sp.normalize) for s in scores]
    cat = torch.cat(ns)
    prev = [None if rerank or l.mask is None else ~l.mask.flatten() for l in ls]
    pruned = None if all(p is None for p in prev) else torch.cat([torch.zeros(l.n_groups, dtype=torch.bool) if p is None else p for p,l in zip(prev, ls)])
    protect = None
    if not sp.allow_empty:
        protect = torch.zeros_like(cat, dtype=torch.bool)
        o = 0
        for s in ns: protect[o + int(s.argmax())] = True; o += s.numel()
    target = math.floor(t/100*sp.n_params + 0.5)
    sel = select(cat, math.floor(target/ls[0].group_size + 0.5), pruned=pruned, protect=protect, rising=t >= ls[0].target)
    return [~p for p in sel.split([l.n_groups for l in ls])]

def model(seed, quantize=False, big=False):
    "Convolutions of very different sizes: some sorted whole, some in gathered windows, and (big) one whose window is placed twice"
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 32, 3), nn.Conv2d(32, 64, 1), nn.Conv2d(64, 128, 3), nn.Conv2d(128, 256, 3),
                      *([nn.Conv2d(256, 512, 3)] if big else []))
    with torch.no_grad():
        for i,c in enumerate(m): c.weight.mul_(1 + i)  # layers on different scales, as fan-in makes them
        if quantize:  # ties everywhere, across layers too
            for c in m: c.weight.copy_((c.weight*64).round()/64)
    return m

def run(ramp, seed=0, quantize=False, big=False, allow_empty=False, rerank_at=()):
    m = model(seed, quantize, big)
    sp = Sparsifier(m, 'weight', 'global', normalize='lamp', allow_empty=allow_empty)
    for i,t in enumerate(ramp):
        rr = i in rerank_at
        ref = reference_keep(sp, t, rr)
        sp.prune(t, rerank=rr)
        got = [torch.ones(l.n_groups, dtype=torch.bool) if l.mask is None else l.mask.flatten() for l in sp.layers]
        assert [torch.equal(a, b) for a,b in zip(got, ref)] == [True]*len(ref), f'event {i} at {t} %'
    return sp

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_rising_ramp_matches(seed):
    run([5., 10., 20., 35., 50., 65., 80., 90., 95.], seed=seed)

def test_ties_everywhere():
    run([10., 30., 50., 70., 90.], quantize=True)

def test_falling_and_rising_again_match():
    "A dsd-like ramp: up, down (only pruned weights revive), up again"
    run([20., 50., 80., 60., 30., 10., 40., 70.])

def test_rerank_and_extreme_targets_match():
    run([30., 60., 99.9, 100., 50.], rerank_at=(1, 4))
    run([30., 99.9, 100.], allow_empty=True)

def test_windows_placed_twice():
    "A layer of 1.2 M weights: its gathered entries are sampled again to place the sorted window"
    run([5., 25., 50., 80.], big=True)

def test_lamp_select_matches_the_full_ranking():
    g = torch.Generator().manual_seed(0)
    sizes = [9, 700, 8_000, 9_000, 120_000, 600_000]
    for trial in range(4):
        scores = [torch.randn(n, generator=g).abs()*(0.2 + i) for i,n in enumerate(sizes)]
        if trial == 1: scores = [(s*10).round()/10 for s in scores]  # ties
        if trial == 2: scores[3][:4000] = 0.  # exact zeros, as pruned weights have
        cands = [torch.rand(n, generator=g) > 0.4 for n in sizes] if trial % 2 else None
        for k in (1, 37, 50_000, 300_000, 420_000):
            rest = lamp_select(scores, k, cands, scratch=torch.empty(50_000, dtype=torch.float64))  # a small scratch buffer: several chunks
            cat = torch.cat([lamp_scores(s) for s in scores])
            ref = smallest(cat, k, None if cands is None else torch.cat(cands)).split(sizes)
            taken = [~r if cands is None else c & ~r for r,c in zip(rest, cands or [None]*len(sizes))]
            assert all(torch.equal(a, b) for a,b in zip(taken, ref)), (trial, k)

def test_lamp_scores_give_ties_equal_scores():
    s = torch.tensor([1., 2., 2., 3.])
    l = lamp_scores(s)
    assert l[1] == l[2] and torch.allclose(l, torch.tensor([1/18, 4/17, 4/17, 1.]))

def test_many_small_layers_match():
    "Small layers gathered together, in more than one batch, beside large ones; some with candidates, some without, some with exact zeros"
    g = torch.Generator().manual_seed(1)
    sizes = [300, 1024, 1025, 5000, 8192]*30 + [8193, 50_000, 400_000]
    scores = [torch.randn(n, generator=g).abs()*(0.05 + (i % 7)) for i,n in enumerate(sizes)]
    for s in scores[::11]: s[:s.numel()//3] = 0.
    cands = [None if i % 3 else torch.rand(n, generator=g) > 0.3 for i,n in enumerate(sizes)]
    cat = torch.cat([lamp_scores(s) for s in scores])
    cc = torch.cat([torch.ones(n, dtype=torch.bool) if c is None else c for n,c in zip(sizes, cands)])
    for k in (5, 90_000, 600_000, 1_000_000):
        rest = lamp_select(scores, k, cands, scratch=torch.empty(1 << 16, dtype=torch.float64), work=torch.empty(max(sizes)))
        ref = smallest(cat, k, cc).split(sizes)
        taken = [(torch.ones(n, dtype=torch.bool) if c is None else c) & ~r for n,r,c in zip(sizes, rest, cands)]
        assert all(torch.equal(a, b) for a,b in zip(taken, ref)), k

def test_mobilenet_v2_ramp_matches():
    "52 convolutions of 288 to 409,600 weights, on the callback's rising ramp and back down"
    import torchvision
    torch.manual_seed(0)
    sp = Sparsifier(torchvision.models.mobilenet_v2(num_classes=10), 'weight', 'global', normalize='lamp')
    for i,t in enumerate([10., 45., 80., 60.]):
        ref = reference_keep(sp, t)
        sp.prune(t)
        got = [torch.ones(l.n_groups, dtype=torch.bool) if l.mask is None else l.mask.flatten() for l in sp.layers]
        assert all(torch.equal(a, b) for a,b in zip(got, ref)), f'event {i} at {t} %'

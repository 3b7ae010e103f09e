"Checks of `fastprune.data` beyond the notebook: reproducible splits, exact subsets, bad inputs, the real offline data"
import pickle, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from fastai.vision.core import imagenet_stats
from fastprune.data import *
from fastprune.data import tiny_level

@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp('data')
    datasets['cifar10'].write_tiny(r, ('airplane', 'bird', 'cat', 'dog'), n_train=6, n_valid=3)
    datasets['caltech101'].write_tiny(r, ('Faces', 'ant', 'bass'), n_train=8, n_valid=2)
    datasets['svhn'].write_tiny(r, ('0', '5', '9'), n_train=5, n_valid=2)
    return r

def files(dl): return [f for f,_ in dl.dataset.items]

@pytest.mark.parametrize('seed', [0, 3])
def test_random_split_reproducible_and_disjoint(seed):
    a,b = get_dls('digits', seed=seed, device='cpu'),get_dls('digits', seed=seed, device='cpu')
    assert torch.equal(a.train_ds.x, b.train_ds.x) and torch.equal(a.valid_ds.x, b.valid_ds.x)
    tr,va = split_idxs(1797, 0.2, seed)
    assert not set(tr) & set(va) and len(tr) + len(va) == 1797
    assert len(a.train_ds) == len(tr) and len(a.valid_ds) == len(va)

def test_file_split_reproducible_and_disjoint(root):
    a,b = (get_dls('caltech101', root=root, bs=4, device='cpu') for _ in range(2))
    assert files(a.train) == files(b.train) and files(a.valid) == files(b.valid)
    assert not set(files(a.train)) & set(files(a.valid))
    assert len(files(a.train)) + len(files(a.valid)) == 30
    assert all('BACKGROUND_Google' not in str(f) for f in files(a.train) + files(a.valid))
    c = get_dls('caltech101', root=root, bs=4, seed=5, device='cpu')
    assert files(c.valid) != files(a.valid)

@pytest.mark.parametrize('k', [1, 3, 5])
def test_n_per_class_exact(root, k):
    d = get_dls('digits', n_per_class=k, bs=8, device='cpu')
    assert np.bincount(d.train_ds.y.numpy()).tolist() == [k]*10
    c = get_dls('cifar10', root=root, n_per_class=k, bs=4, device='cpu')
    labels = [l for _,l in c.train_ds.items]
    assert {l: labels.count(l) for l in set(labels)} == {l: k for l in ('airplane', 'bird', 'cat', 'dog')}
    s = get_dls('svhn', root=root, n_per_class=k, bs=4, device='cpu')
    assert np.bincount(s.train_ds.y.numpy(), minlength=10)[[0, 5, 9]].tolist() == [k]*3

def test_subsets_keep_validation_and_nest():
    full,small,big = (get_dls('digits', n_per_class=k, device='cpu') for k in (None, 5, 10))
    assert torch.equal(full.valid_ds.x, small.valid_ds.x)
    a,b = small.train_ds.x.flatten(1),big.train_ds.x.flatten(1)
    assert all((b == r).all(1).any() for r in a)  # every image of the 5-per-class subset is in the 10-per-class one
    assert len(get_dls('digits', n_valid=50, device='cpu').valid_ds) == 50

def test_too_few_warns():
    with pytest.warns(UserWarning, match='keeping all'): idx = subset_idxs([0, 0, 1], n_per_class=2)
    assert idx.tolist() == [0, 1, 2]

def test_labels_match_images(root):
    d = get_dls('svhn', root=root, size=16, bs=6, device='cpu')
    x,y = d.valid.one_batch()
    m,s = (torch.tensor(o).view(1, 3, 1, 1) for o in imagenet_stats)
    lv = ((x.as_subclass(torch.Tensor)*s + m)*255).mean((1, 2, 3))
    expect = torch.tensor([float(tiny_level(['0', '5', '9'].index(d.vocab[int(i)]))) for i in y])
    assert torch.allclose(lv, expect, atol=1.)

def test_unknown_name():
    with pytest.raises(ValueError, match=r"unknown data set 'cifar-10': choose one of \['caltech101', 'cifar10', 'cifar100', 'digits', 'fashion_mnist', 'mnist5k', 'svhn'\]"):
        get_dls('cifar-10')

@pytest.mark.parametrize('name,expect', [('cifar10', 'cifar10/{train,test}/<class>/*.png'), ('cifar100', 'cifar100/{train,test}'),
    ('svhn', 'svhn/{train,test}_32x32.mat'), ('caltech101', 'caltech101/101_ObjectCategories/<class>/*.jpg')])
def test_missing_root(tmp_path, name, expect):
    with pytest.raises(ValueError, match='download=True') as e: get_dls(name, root=tmp_path/'nowhere')
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    assert f'{tmp_path}/nowhere/{expect}' in msg and 'does not exist' in msg

def test_missing_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv('FASTPRUNE_DATA', str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(DataNotFoundError, match=f'nothing found at {tmp_path}/svhn'): get_dls('svhn')
    datasets['svhn'].write_tiny(tmp_path, ('1', '2'))
    assert len(get_dls('svhn', bs=2, device='cpu').train_ds) == 8

def test_download_only_when_asked(tmp_path):
    from copy import copy
    calls = []
    src = copy(datasets['cifar10'])
    src.fetch = lambda r: (calls.append(r), src.write_tiny(r, ('cat', 'dog')))
    with pytest.raises(DataNotFoundError): get_dls(src, root=tmp_path)
    assert calls == []
    d = get_dls(src, root=tmp_path, download=True, bs=2, device='cpu')
    assert calls == [tmp_path] and list(d.vocab) == ['cat', 'dog']
    get_dls(src, root=tmp_path, download=True, bs=2, device='cpu')
    assert len(calls) == 1  # already there: no second download

@pytest.mark.parametrize('kw,msg', [
    (dict(size=0), 'size must be an int >= 1, got 0'), (dict(size=32.5), 'size must be an int >= 1, got 32.5'),
    (dict(bs=0), 'bs must be an int >= 1, got 0'), (dict(bs=1.5), "bs must be an int >= 1, got 1.5"),
    (dict(n_per_class=0), 'n_per_class must be an int >= 1 or None, got 0'), (dict(n=-5), 'n must be an int >= 1 or None, got -5'),
    (dict(n=10, n_per_class=1), 'not both'), (dict(valid_pct=0.), r'valid_pct must be a number in \(0, 1\), got 0.0'),
    (dict(seed=-1), 'seed must be an int >= 0'), (dict(num_workers=-1), 'num_workers must be an int >= 0'),
    (dict(method='fit'), r"unknown method 'fit': choose one of \['crop', 'pad', 'squish'\]"),
    (dict(stats=([0.5]*3, [0., 1., 1.])), 'std > 0'),
])
def test_bad_arguments(tmp_path, kw, msg):
    # checked before any file is looked for: a missing root does not mask them
    with pytest.raises(ValueError, match=msg): get_dls('cifar10', root=tmp_path/'nowhere', **kw)

def test_wrong_types_are_type_errors(tmp_path):
    with pytest.raises(TypeError, match="bs must be an int >= 1, got str: '64'"): get_dls('cifar10', root=tmp_path/'nowhere', bs='64')

@pytest.mark.filterwarnings('ignore:load_learner')
def test_learner_round_trip(tmp_path):
    from fastai.learner import Learner, load_learner
    from fastai.layers import ConvLayer, Flatten
    from torch import nn
    d = get_dls('digits', n_per_class=5, bs=16, device='cpu')
    learn = Learner(d, nn.Sequential(ConvLayer(3, 8, stride=2), nn.AdaptiveAvgPool2d(1), Flatten(), nn.Linear(8, d.c)), path=tmp_path)
    with learn.no_logging(): learn.fit(1, 1e-3)
    learn.export('l.pkl')
    assert load_learner(tmp_path/'l.pkl').dls.vocab == d.vocab

FASHION = Path('/usr/share/datasets/fashion-mnist')
@pytest.mark.skipif(not (FASHION/'train-images-idx3-ubyte.gz').exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv('FASTPRUNE_DATA', raising=False)
    d = get_dls('fashion_mnist', n_per_class=20, n_valid=200, bs=50, device='cpu')
    assert d.info['n_train'] == 200 and d.info['n_valid'] == 200
    assert np.bincount(d.train_ds.y.numpy()).tolist() == [20]*10
    x,y = d.one_batch()
    assert x.shape == (50, 3, 32, 32) and 0 <= y.min() and y.max() < 10
    tr = read_fashion(FASHION)[0]
    assert tr[0].shape == (60000, 1, 28, 28) and tr[0].dtype == torch.uint8

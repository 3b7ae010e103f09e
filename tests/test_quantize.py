"int8 ONNX files quantized by onnxruntime: a compacted net agrees with float32 and shrinks, bad input is refused before anything is written, `learn.export_onnx` leaves the learner alone"
import sys, warnings
import numpy as np, pytest, torch
from torch import nn
from fastprune.all import *
from fastprune.export import OnnxFile, calibration_feeds
from conftest import make_learner, small_convnet, trained_bn, digits_tensors

pytest.importorskip('onnxruntime')
import onnx, onnxruntime as ort

warnings.filterwarnings('ignore', category=FutureWarning)

def conv_net():
    "Three conv layers wide enough for their weights to outweigh what int8 adds (scales, zero points)"
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

@pytest.fixture(scope='module')
def compacted():
    "A compacted conv net, digits batches `(x, y)` to calibrate on and others to test on"
    torch.manual_seed(0)
    m = trained_bn(conv_net())
    sp = Sparsifier(m, 'filter').prune(50)
    (xt,yt),(xv,_) = digits_tensors(16, 0)
    return compact(m, xt[:2], sparsifier=sp).eval(), [(xt[i:i+64], yt[i:i+64]) for i in range(0, 192, 64)], xv[:128]

def _run(fn, x): return ort.InferenceSession(str(fn), providers=['CPUExecutionProvider']).run(None, {'input0': x.numpy()})[0]

def test_int8_agrees_with_float32_and_is_smaller(compacted, tmp_path):
    small,cal,xv = compacted
    assert small[0].out_channels == 16 and small[4].out_channels == 32  # compacted: half the filters
    f32 = export_onnx(small, cal[0][0][:2], tmp_path/'f32.onnx')
    fn = export_onnx(small, cal[0][0][:2], tmp_path/'int8.onnx', quantize='int8', calibration=cal)
    assert isinstance(fn, OnnxFile) and isinstance(fn, type(f32)) and fn == tmp_path/'int8.onnx'
    assert fn.quantize == 'int8' and fn.n_checked == 3*64 and fn.agreement >= 0.95 and 'top-1 agreement' in repr(fn)
    assert f32.quantize is None and f32.agreement is None
    assert fn.stat().st_size < f32.stat().st_size/2.5
    g = onnx.load(str(fn)).graph
    qw = [i for i in g.initializer if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert sorted(tuple(i.dims)[:2] for i in qw) == [(16, 3), (32, 16), (32, 32)]  # every conv weight in int8, at its compacted size
    with torch.no_grad(): ref = small(xv)
    got = _run(fn, xv)  # another batch size, inputs it was not calibrated on
    assert got.shape == (128, 10) and (got.argmax(1) == ref.argmax(1).numpy()).mean() >= 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f32.onnx', 'int8.onnx']  # no temporary file left

def test_calibration_from_a_dataloader_takes_n_batches(compacted, tmp_path):
    small,cal,_ = compacted
    from fastai.data.load import DataLoader
    from torch.utils.data import TensorDataset
    dl = DataLoader(TensorDataset(torch.cat([x for x,_ in cal]), torch.cat([y for _,y in cal])), bs=32)
    fn = export_onnx(small, cal[0][0][:2], tmp_path/'m.onnx', quantize='int8', calibration=dl, n_batches=2)
    assert fn.n_checked == 64 and fn.agreement >= 0.9
    assert len(calibration_feeds(dl, cal[0][0][:2], n_batches=100)) == 6

def test_bad_quantize_and_calibration_are_refused_before_writing(compacted, tmp_path):
    small,cal,_ = compacted
    x = cal[0][0][:2]
    for q in ('int4', 'INT8', 8, True):
        with pytest.raises(ValueError, match=r"None \(float32\) or 'int8'"): export_onnx(small, x, tmp_path/'a.onnx', quantize=q)
    with pytest.raises(ValueError, match='needs calibration'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8')
    with pytest.raises(ValueError, match="only with quantize='int8'"): export_onnx(small, x, tmp_path/'a.onnx', calibration=cal)
    with pytest.raises(ValueError, match=r'calibration batch 1, input 0: \(64, 3, 32, 32\).*\(2, 3, 16, 16\)'):
        export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=[cal[0], torch.randn(64, 3, 32, 32)])
    with pytest.raises(ValueError, match='torch.float64'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=[x.double()])
    with pytest.raises(ValueError, match='no batch'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=[])
    with pytest.raises(TypeError, match='starts with the input tensor'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=[('a', x)])
    with pytest.raises(ValueError, match='min_agreement'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=cal, min_agreement=1.5)
    with pytest.raises(ValueError, match='n_batches'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=cal, n_batches=0)
    with pytest.raises(TypeError, match='quant_options'): export_onnx(small, x, tmp_path/'a.onnx', quantize='int8', calibration=cal, quant_options=['x'])
    assert list(tmp_path.iterdir()) == []

class EinsumNet(nn.Module):
    "Its only weight goes through an einsum, which onnxruntime does not quantize"
    def __init__(self): super().__init__(); self.w = nn.Parameter(torch.randn(3, 10))
    def forward(self, x): return torch.einsum('nchw,ck->nk', x, self.w)

def test_a_model_onnxruntime_cannot_quantize_is_named(tmp_path):
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="none of the weights.*Einsum '/Einsum'"): export_onnx(EinsumNet(), x, tmp_path/'e.onnx', quantize='int8', calibration=[x])
    assert list(tmp_path.iterdir()) == []
    export_onnx(EinsumNet(), x, tmp_path/'e.onnx')  # in float32 it exports
    assert [p.name for p in tmp_path.iterdir()] == ['e.onnx']

def test_a_failed_quantization_leaves_the_old_file_and_no_partial_one(compacted, tmp_path, monkeypatch):
    small,cal,_ = compacted
    fn = tmp_path/'m.onnx'
    fn.write_bytes(b'the previous release')
    from onnxruntime import quantization
    def broken(*a, **kw): raise RuntimeError('out of disk')
    monkeypatch.setattr(quantization, 'quantize_static', broken)
    with pytest.raises(RuntimeError, match='onnxruntime could not quantize the model: RuntimeError: out of disk'):
        export_onnx(small, cal[0][0][:2], fn, quantize='int8', calibration=cal)
    assert [p.name for p in tmp_path.iterdir()] == ['m.onnx'] and fn.read_bytes() == b'the previous release'

def tied_net(seed=0):
    "A linear classifier whose ten rows differ by less than an int8 step: its top class is a near tie, which int8 rounding decides"
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(3*16*16, 10, bias=False)
    with torch.no_grad(): lin.weight.copy_(torch.randn(1, 3*16*16, generator=g) + 1e-4*torch.randn(10, 3*16*16, generator=g))
    return nn.Sequential(nn.Flatten(), lin).eval()

def test_min_agreement_fails_without_writing(compacted, tmp_path):
    _,cal,_ = compacted
    fn = export_onnx(tied_net(), cal[0][0][:2], tmp_path/'m.onnx', quantize='int8', calibration=cal)
    assert fn.agreement < 0.9  # reported, not refused: min_agreement is 0 by default
    fn.unlink()
    with pytest.raises(RuntimeError, match='below min_agreement=0.99'):
        export_onnx(tied_net(), cal[0][0][:2], tmp_path/'m.onnx', quantize='int8', calibration=cal, min_agreement=0.99)
    assert list(tmp_path.iterdir()) == []

def test_missing_onnxruntime_names_the_extra(compacted, tmp_path, monkeypatch):
    small,cal,_ = compacted
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # `import onnxruntime` fails as if it were not installed
    with pytest.raises(ImportError, match=r'fastprune\[deploy\]'): export_onnx(small, cal[0][0][:2], tmp_path/'m.onnx', quantize='int8', calibration=cal)
    assert list(tmp_path.iterdir()) == []

def _fitted(model, gran='filter'):
    learn = make_learner(model, size=16, n_train=256, n_valid=128)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-2, cbs=SparsifyCallback(50, gran))
    return learn

def test_learner_export_compacts_a_copy_and_calibrates_on_its_data(tmp_path):
    learn = _fitted(small_convnet())
    learn.path = tmp_path
    learn.model.train()
    params = list(learn.model.parameters())
    before = {k: v.clone() for k,v in learn.model.state_dict().items()}
    with pytest.raises(ValueError, match="'int8'"): learn.export_onnx('bad.onnx', quantize='int16')
    fn = learn.export_onnx('m.onnx', quantize='int8')
    assert fn == tmp_path/'m.onnx' and fn.n_checked == 128 and fn.agreement >= 0.9  # the two batches of the validation set
    f32 = learn.export_onnx('f32.onnx')
    # the learner's model: same parameters, same values, same mode, same masks
    assert all(a is b for a,b in zip(learn.model.parameters(), params)) and len(list(learn.model.parameters())) == len(params)
    assert all(torch.equal(v, learn.model.state_dict()[k]) for k,v in before.items()) and learn.model.training
    assert learn.sparsifier.model is learn.model and learn.model[0].out_channels == 8
    # the files: compacted (4 of 8 filters in the first conv), and the float32 one gives the masked model's outputs
    assert (4, 3, 3, 3) in [tuple(i.dims) for i in onnx.load(str(fn)).graph.initializer]
    xb = learn.dls.valid.one_batch()[0]
    learn.model.eval()
    with torch.no_grad(): ref = learn.model(xb)
    assert np.abs(_run(f32, xb) - ref.numpy()).max() <= 1e-4*ref.abs().max().item()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f32.onnx', 'm.onnx']

def test_learner_export_without_structured_masks_exports_the_model_as_is(tmp_path):
    learn = _fitted(small_convnet(), 'weight')
    fn = learn.export_onnx(tmp_path/'w.onnx', quantize='int8', calibration=[learn.dls.train.one_batch()])
    assert fn.n_checked == 64
    assert (8, 3, 3, 3) in [tuple(i.dims) for i in onnx.load(str(fn)).graph.initializer]  # nothing cut: the zeros are inside filters

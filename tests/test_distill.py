"Knowledge distillation: the loss, the teacher's handling, mixed precision, pruning beside it, export, and bad input"
import copy, math, os, pickle, warnings, pytest, torch
import torch.nn.functional as F
from torch import nn
from fastai.callback.core import Callback
from fastai.learner import load_learner
from fastprune.all import *
from fastprune.distill import DistillCallback, distill_loss
from conftest import make_learner, small_convnet, assert_exact, cpu_autocast

def teacher_net(c=32):
    "A wider network with the student's outputs"
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))

class CheckLoss(Callback):
    "After the distillation callback: the loss it left against one written out from scratch, and the teacher's mode when it ran"
    order = DistillCallback.order + 1
    run_valid = False
    def __init__(self, teacher, alpha, T): self.teacher,self.alpha,self.T,self.errs,self.modes = teacher,alpha,T,[],[]
    def before_fit(self): self.h = self.teacher.register_forward_hook(lambda m,i,o: self.modes.append((m.training, torch.is_grad_enabled())))
    def after_loss(self):
        with torch.no_grad():
            task = self.learn.loss_func(self.pred, *self.yb)
            zt = self.teacher(*self.xb).float()
            pt,ps = F.softmax(zt/self.T, -1),F.softmax(self.pred.float()/self.T, -1)
            kl = (pt*(pt.log() - ps.log())).sum(-1).mean()  # the teacher's distribution is the target
            want = (1-self.alpha)*task + self.alpha*self.T**2*kl
        self.errs.append(abs(float(self.loss_grad.detach()) - float(want))/max(abs(float(want)), 1e-6))
    def after_fit(self): self.h.remove()

@pytest.mark.parametrize('alpha,T', [(0.5, 4.), (0., 2.), (1., 1.), (0.3, 8.)])
def test_the_training_loss_is_the_mix_with_the_teacher_as_target(alpha, T):
    teacher = teacher_net()
    learn = make_learner(small_convnet(), n_train=128)
    chk = CheckLoss(teacher, alpha, T)
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=[DistillCallback(teacher, alpha, T), chk])
    assert chk.errs and max(chk.errs) < 1e-4
    assert chk.modes and all(not tr and not g for tr,g in chk.modes)  # every forward of the teacher: eval mode, no gradients

def test_validation_keeps_the_task_loss_and_the_teacher_comes_back_unchanged():
    teacher = teacher_net().train()
    sd = {k: v.clone() for k,v in teacher.state_dict().items()}
    learn = make_learner(small_convnet(), n_train=128, n_valid=128)
    cb = DistillCallback(teacher, alpha=0.9, T=3.)
    learn.add_cb(cb)
    with learn.no_bar(): learn.fit(1, 1e-3)
    valid_loss = learn.recorder.values[-1][1]
    learn.remove_cb(cb)
    with learn.no_bar(): plain = learn.validate()[0]
    assert math.isclose(valid_loss, plain, rel_tol=1e-6)
    assert teacher.training and all(m.training for m in teacher.modules())
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, sd[k]) for k,v in teacher.state_dict().items())  # BatchNorm statistics included

def test_beside_sparsify_callback_with_fit_one_cycle():
    teacher = teacher_net()
    learn = make_learner(small_convnet(), n_train=256)
    with learn.no_bar(): learn.fit_one_cycle(2, 1e-2, cbs=[SparsifyCallback(70, min_delta=0), DistillCallback(teacher)])
    assert_exact(learn.sparsifier, 70)
    assert all(math.isfinite(v) for v in learn.recorder.values[-1])

class ConvDtype(Callback):
    "The dtype the first convolution of the student and of the teacher compute in"
    def __init__(self, teacher): self.teacher = teacher
    def before_fit(self): self.hs = [m[0].register_forward_hook(lambda m,i,o,k=k: setattr(self, k, o.dtype)) for k,m in (('student', self.model), ('teacher', self.teacher))]
    def after_fit(self):
        for h in self.hs: h.remove()

def test_the_teacher_runs_in_the_students_autocast_bf16_on_cpu():
    teacher = teacher_net()
    learn = make_learner(small_convnet(), n_train=128)
    dt = ConvDtype(teacher)
    chk = CheckLoss(teacher, 0.5, 4.)
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=[SparsifyCallback(50), DistillCallback(teacher), cpu_autocast(), dt])
    assert dt.student == dt.teacher == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in [*learn.model.parameters(), *teacher.parameters()])
    assert math.isfinite(learn.recorder.values[-1][0])

@pytest.mark.skipif(not torch.cuda.is_available(), reason='fp16 mixed precision needs CUDA')
def test_to_fp16_on_cuda_moves_the_teacher_to_the_students_device():
    teacher = teacher_net()  # on the CPU
    learn = make_learner(small_convnet(), n_train=256).to_fp16()
    learn.dls.to('cuda'); learn.model.cuda()
    dt = ConvDtype(teacher)
    with learn.no_bar(): learn.fit(1, 1e-3, cbs=[SparsifyCallback(60), DistillCallback(teacher), dt])
    assert next(teacher.parameters()).is_cuda and dt.student == dt.teacher == torch.float16
    assert math.isfinite(learn.recorder.values[-1][0])

def test_export_leaves_the_teacher_out(tmp_path):
    teacher = teacher_net(128)  # about 100 times the student
    learn = make_learner(small_convnet(), n_train=128)
    with learn.no_bar(): learn.fit(1, 1e-3)
    learn.export(tmp_path/'plain.pkl')
    learn.add_cb(DistillCallback(teacher))
    with learn.no_bar(): learn.fit(1, 1e-3)
    learn.export(tmp_path/'distill.pkl')
    teacher_bytes = sum(p.numel()*4 for p in teacher.parameters())
    assert os.path.getsize(tmp_path/'distill.pkl') - os.path.getsize(tmp_path/'plain.pkl') < teacher_bytes/20
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        back = load_learner(tmp_path/'distill.pkl')
    cb = next(c for c in back.cbs if isinstance(c, DistillCallback))
    assert 'teacher' not in cb.__dict__ and cb.alpha == 0.5 and cb.T == 4.
    assert 'teacher' not in pickle.loads(pickle.dumps(DistillCallback(teacher))).__dict__

def test_a_callback_without_its_teacher_says_so():
    cb = pickle.loads(pickle.dumps(DistillCallback(teacher_net())))
    learn = make_learner(small_convnet(), n_train=64)
    with pytest.raises(ValueError, match='no teacher'), learn.no_bar(): learn.fit(1, cbs=cb)

@pytest.mark.parametrize('kw,err,msg', [(dict(alpha=1.5), ValueError, r'alpha must be a number in \[0, 1\]'), (dict(alpha=-0.1), ValueError, r'\[0, 1\]'),
    (dict(alpha='half'), TypeError, 'alpha'), (dict(T=0), ValueError, 'T must be a temperature > 0'), (dict(T=-2.), ValueError, '> 0'),
    (dict(T=float('nan')), ValueError, '> 0')])
def test_bad_settings_fail_at_construction(kw, err, msg):
    with pytest.raises(err, match=msg): DistillCallback(teacher_net(), **kw)
    with pytest.raises(TypeError, match='nn.Module'): DistillCallback('resnet18')

class CountSteps(Callback):
    n = 0
    def after_step(self): self.n += 1

@pytest.mark.parametrize('teacher,msg', [(nn.Sequential(nn.Flatten(), nn.Linear(3*16*16, 7)), r"teacher's output has shape \(1, 7\) and the student's \(1, 10\)"),
                                         (None, 'shares parameters')])
def test_a_teacher_that_does_not_fit_fails_before_any_step_and_changes_nothing(teacher, msg):
    learn = make_learner(small_convnet(), n_train=64)
    teacher = learn.model if teacher is None else teacher.train()
    sd = {k: v.clone() for k,v in learn.model.state_dict().items()}
    steps = CountSteps()
    with pytest.raises(ValueError, match=msg), learn.no_bar(): learn.fit(1, 1e-2, cbs=[DistillCallback(teacher), steps])
    assert steps.n == 0 and all(torch.equal(v, sd[k]) for k,v in learn.model.state_dict().items())
    assert teacher.training  # back in its own mode

def test_distill_loss_is_zero_divergence_for_equal_logits_and_positive_otherwise():
    z = torch.randn(6, 10)
    assert float(distill_loss(z, z, torch.tensor(0.), alpha=1.)) == pytest.approx(0., abs=1e-6)
    assert float(distill_loss(z, z.flip(-1), torch.tensor(0.), alpha=1.)) > 0

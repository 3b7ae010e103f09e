"One process of `test_distributed.py`: short fits with `SparsifyCallback` under fastai's `distrib_ctx`, on CPU with gloo"
import json, sys, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).parent))
from fastai.learner import Learner
from fastai.data.core import DataLoaders
from torch.utils.data import TensorDataset
from fastai.callback.core import Callback
from fastai.callback.schedule import sched_lin
from fastai.losses import CrossEntropyLossFlat
from fastai.torch_core import rank_distrib, set_seed
from fastprune.callback import SparsifyCallback
from conftest import digits_tensors, small_convnet

def _broadcast(self, t, rank):
    "fastai's `DistributedDL` sends its indices through a CUDA tensor (for nccl): gloo takes CPU ones"
    t = torch.LongTensor(t)
    torch.distributed.broadcast(t, rank)
    return t.tolist()

class Steps(Callback):
    "Groups pruned in each layer after every step"
    order = SparsifyCallback.order+1
    def before_fit(self): self.pruned = []
    def after_step(self): self.pruned.append([l.n_pruned for l in self.learn.sparsifier.layers])

cfgs = dict(large_final=dict(granularity='weight'), random=dict(granularity='filter', criteria='random', seed=3),
            movement=dict(granularity='kernel', criteria='movement'))

if __name__ == '__main__':
    from fastai.distributed import DistributedDL
    DistributedDL._broadcast = _broadcast
    out,rank = Path(sys.argv[1]),rank_distrib()
    (xt,yt),(xv,yv) = digits_tensors(16, 0, 512)
    dls = DataLoaders.from_dsets(TensorDataset(xt,yt), TensorDataset(xv[:256],yv[:256]), bs=64, device='cpu')
    res = {}
    for name,kw in cfgs.items():
        set_seed(rank)  # each process starts from its own weights: DDP hands rank 0's to all
        learn = Learner(dls, small_convnet(), loss_func=CrossEntropyLossFlat())
        steps = Steps()
        with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(sync_bn=False, cpu=True):  # SyncBatchNorm needs GPUs
            learn.fit(2, 1e-2, cbs=[SparsifyCallback(60, schedule='linear', min_delta=0, **kw), steps])
        sp = learn.sparsifier
        n = len(steps.pruned)  # steps this process took: its share of each epoch
        res[name] = dict(pruned=steps.pruned, planned=[list(sp.plan(sched_lin(0, 60, (i+1)/n))) for i in range(n)])
        torch.save(dict(state=learn.model.state_dict(), masks=sp.state_dict()), out/f'{name}_{rank}.pth')
    (out/f'steps_{rank}.json').write_text(json.dumps(res))

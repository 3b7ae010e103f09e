"Two processes on one CPU (gloo) under fastai's distributed training end with bit-identical masks and weights"
import json, os, signal, subprocess, sys, time, pytest, torch
from pathlib import Path
from distrib_fit import cfgs

@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('distrib')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(Path(__file__).parent/'distrib_fit.py'), str(out)]
    t0 = time.time()
    # its own session: on a hang, the launcher and both workers are killed together
    p = subprocess.Popen(cmd, env={**os.environ, 'OMP_NUM_THREADS': '1'}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try: log,_ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL); log,_ = p.communicate()
        pytest.fail(f'2-process fit still running after 60 s:\n{log[-3000:]}')
    assert p.returncode == 0, log[-3000:]
    return out,time.time()-t0

def test_finishes_within_a_minute(ranks): assert ranks[1] < 60

@pytest.mark.parametrize('name', list(cfgs))
def test_ranks_bit_identical(ranks, name):
    a,b = (torch.load(ranks[0]/f'{name}_{r}.pth') for r in (0, 1))
    assert a['masks'].keys() == b['masks'].keys() and len(a['masks']) == 2
    for k in a['masks']: assert torch.equal(a['masks'][k], b['masks'][k]), k
    for k in a['state']: assert torch.equal(a['state'][k], b['state'][k]), k

@pytest.mark.parametrize('name', list(cfgs))
def test_schedule_counts_the_steps_of_each_process(ranks, name):
    for r in (0, 1):
        st = json.loads((ranks[0]/f'steps_{r}.json').read_text())[name]
        assert len(st['pruned']) == 8  # 512 digits, batches of 64, half to each process, 2 epochs
        assert st['pruned'] == st['planned']  # every step on its target: the last lands on 60 %

"Two processes on one CPU (gloo) under fastai's distributed training end with bit-identical masks and weights"
import json, os, signal, subprocess, sys, pytest, torch
from pathlib import Path
from distrib_fit import cfgs

def process_tree(pid:int)->list:
    "`pid` and every process below it, read from /proc (the launcher starts each worker in a session of its own, out of its process group)"
    kids = {}
    for d in Path('/proc').iterdir():
        if not d.name.isdigit(): continue
        try: ppid = int((d/'stat').read_text().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError): continue
        kids.setdefault(ppid, []).append(int(d.name))
    res,todo = [],[pid]
    while todo: res.append(todo.pop()); todo += kids.get(res[-1], [])
    return res

@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('distrib')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(Path(__file__).parent/'distrib_fit.py'), str(out)]
    log = out/'log.txt'
    with open(log, 'w') as f:  # a file, not a pipe: a worker that outlives the launcher cannot block the read
        p = subprocess.Popen(cmd, env={**os.environ, 'OMP_NUM_THREADS': '1'}, stdout=f, stderr=subprocess.STDOUT)
        try: p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            for pid in process_tree(p.pid):
                try: os.kill(pid, signal.SIGKILL)
                except ProcessLookupError: pass
            p.wait()
            pytest.fail(f'2-process fit still running after 120 s, killed:\n{log.read_text()[-3000:]}')
    assert p.returncode == 0, log.read_text()[-3000:]
    return out

@pytest.mark.parametrize('name', list(cfgs))
def test_ranks_bit_identical(ranks, name):
    a,b = (torch.load(ranks/f'{name}_{r}.pth') for r in (0, 1))
    assert a['masks'].keys() == b['masks'].keys() and len(a['masks']) == 2
    for k in a['masks']: assert torch.equal(a['masks'][k], b['masks'][k]), k
    for k in a['state']: assert torch.equal(a['state'][k], b['state'][k]), k

@pytest.mark.parametrize('name', list(cfgs))
def test_schedule_counts_the_steps_of_each_process(ranks, name):
    for r in (0, 1):
        st = json.loads((ranks/f'steps_{r}.json').read_text())[name]
        assert len(st['pruned']) == 8  # 512 digits, batches of 64, half to each process, 2 epochs
        assert st['pruned'] == st['planned']  # every step on its target: the last lands on 60 %

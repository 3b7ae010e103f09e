"bench/gpu_check.sh --dry-run: the GPU check's own path (tests, two paper-protocol runs, the cost projection), tiny, on the CPU"
import re, subprocess, sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1]/'bench'/'gpu_check.sh'

def run(*args): return subprocess.run(['bash', str(SCRIPT), *args], capture_output=True, text=True, timeout=600)

def test_dry_run():
    p = subprocess.run(['bash', str(SCRIPT), '--dry-run', '--gpus', '4'], capture_output=True, text=True, timeout=600,
                       env={'PATH': '/usr/bin:/bin', 'PYTHON': sys.executable, 'HOME': str(Path.home()), 'OMP_NUM_THREADS': '1'})
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    assert out.index('== 1. the GPU-only tests') < out.index('== 2. two runs') < out.index('== 3. the paper preset (624 runs)')
    assert re.search(r'\d+ (passed|skipped)', out)  # the GPU-only tests were collected (on a CPU they skip)
    runs = re.findall(r'(mobilenet_v2|vgg16) +(pretrained|scratch) +(weight|filter) 90 %, 32 px, fp32: 12 \+ 6 images, .* ([\d,.]+) images/s', out)
    assert [r[:3] for r in runs] == [('mobilenet_v2', 'pretrained', 'weight'), ('vgg16', 'scratch', 'filter')], out
    hours = re.search(r'in all: ([\d,.]+) GPU-hours on one GPU .*; on 4 GPUs with --executor ray: ([\d,.]+) hours', out)
    one,four = (float(v.replace(',', '')) for v in hours.groups())
    assert one > 0 and abs(four - one/4) <= 0.1*one/4 + 0.1

def test_bad_arguments():
    for args,msg in [(['--gpus', '0'], '--gpus must be a whole number >= 1'), (['--workers', 'x'], '--workers must be a whole number'), (['--fast'], 'usage:')]:
        p = run(*args)
        assert p.returncode == 2 and msg in p.stderr, p.stderr

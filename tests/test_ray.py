"The Ray executor: the same rows as the sequential executor, a driver killed mid-way that resumes, bad requests that train nothing"
import os, signal, subprocess, sys, time
import pandas as pd, pytest, ray, torch
from fastprune.study import run_study, read_results

TINY = dict(sparsities=[0, 50], seeds=0, epochs=1, size=16, n_per_class=5, n_valid=40, bs=16)  # 2 arms x (dense, 50 %): 4 runs
CLI_TINY = ['--sparsities', '0,50', '--seeds', '0', '--epochs', '1', '--size', '16', '--n-per-class', '5', '--n-valid', '40', '--bs', '16']

def same(a, b):
    "Two study tables equal but for wall time"
    pd.testing.assert_frame_equal(a.drop(columns='time'), b.drop(columns='time'), check_dtype=False)

@pytest.fixture(scope='module')
def cluster():
    "A local Ray of 2 CPUs (and the machine's GPUs), so 2 workers train at once; yields the address other drivers join it at"
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()

@pytest.fixture(scope='module')
def ref(tmp_path_factory):
    "The sweep under the sequential executor, one torch thread per run"
    return run_study(out=tmp_path_factory.mktemp('sequential'), bar=False, log=False, plot=False, cpus_per_run=1, **TINY)

def test_same_rows_as_sequential(cluster, ref, tmp_path):
    df = run_study(out=tmp_path, bar=False, log=False, plot=False, executor='ray', cpus_per_run=1, **TINY)
    assert len(df) == 4 and df.error.isna().all() and df.correct.str.len().gt(0).all()
    same(df, ref)  # accuracies, losses and per-image correctness equal, in the plan's order
    same(read_results(tmp_path/'results.csv'), ref)

def test_killed_driver_resumes(cluster, ref, tmp_path):
    "A driver killed (SIGKILL) after its first rows land: the rows it wrote stay, and a second call trains only the others"
    cmd = [sys.executable, '-c', 'import sys; from fastprune.cli import main; sys.exit(main())', 'study', '--out', str(tmp_path), *CLI_TINY,
           '--executor', 'ray', '--address', cluster, '--cpus-per-run', '1', '--no-plot']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    fn,t = tmp_path/'results.csv',time.monotonic()
    try:
        while p.poll() is None and not (fn.exists() and len(read_results(fn))) and time.monotonic() - t < 240: time.sleep(0.02)
    finally:
        os.killpg(p.pid, signal.SIGKILL)  # the driver and any child of its own session
        out = p.communicate()[0].decode()
    n = len(read_results(fn))
    assert 1 <= n < 4, f'{n} rows when the driver was killed; its output: {out}'
    assert '\r' not in out and out.count('[1/4]') == 1, out  # its output is a pipe: one line per run, no progress-bar frames
    df = run_study(out=tmp_path, bar=False, log=False, plot=False, executor='ray', cpus_per_run=1, **TINY)
    same(df, ref)

def _untouched(tmp_path): return not (tmp_path/'results.csv').exists()

def test_unreachable_address(tmp_path):
    with pytest.raises(ValueError, match='no Ray cluster answers at 127.0.0.1:9'):
        run_study(out=tmp_path, bar=False, executor='ray', address='127.0.0.1:9', **TINY)
    with pytest.raises(ValueError, match="address must be 'auto', 'host:port'"): run_study(out=tmp_path, bar=False, executor='ray', address='nowhere', **TINY)
    assert _untouched(tmp_path)

def test_more_than_the_cluster_has(cluster, tmp_path):
    g = torch.cuda.device_count()
    with pytest.raises(ValueError, match=rf'each run asks for {g + 1} GPU\(s\) but the Ray cluster has {g}'): run_study(out=tmp_path, executor='ray', gpus_per_run=g + 1, **TINY)
    with pytest.raises(ValueError, match=r'each run asks for 3 CPU\(s\) but the Ray cluster has 2'): run_study(out=tmp_path, executor='ray', cpus_per_run=3, **TINY)
    with pytest.raises(ValueError, match="precision 'fp16' needs a CUDA device"): run_study(out=tmp_path, executor='ray', gpus_per_run=0, precision='fp16', **TINY)
    with pytest.raises(ValueError, match='Ray is already initialised in this process'): run_study(out=tmp_path, executor='ray', address=cluster, **TINY)
    assert _untouched(tmp_path) and ray.is_initialized()  # a Ray started by the caller stays up

def test_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'dask'"): run_study(out=tmp_path, executor='dask', **TINY)
    with pytest.raises(ValueError, match='settings of the Ray executor'): run_study(out=tmp_path, address='auto', **TINY)
    with pytest.raises(ValueError, match='gpus_per_run must be a number >= 0'): run_study(out=tmp_path, executor='ray', gpus_per_run=-1, **TINY)
    with pytest.raises(ValueError, match='cpus_per_run must be an int >= 1'): run_study(out=tmp_path, executor='ray', cpus_per_run=0, **TINY)
    with pytest.raises(ValueError, match='leave device=None'): run_study(out=tmp_path, executor='ray', device='cpu', **TINY)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="precision 'bf16' needs a CUDA device"): run_study(out=tmp_path, precision='bf16', **TINY)
    assert _untouched(tmp_path)

def test_ray_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'ray', None)  # `import ray` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastprune\[ray\]"'): run_study(out=tmp_path, executor='ray', **TINY)
    assert _untouched(tmp_path)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_ray_task_on_its_gpu_in_bf16(cluster, tmp_path):
    "Each task trains on the GPU Ray gives it, in bfloat16 mixed precision"
    df = run_study(out=tmp_path, bar=False, log=False, plot=False, executor='ray', gpus_per_run=0.5, precision='bf16', **TINY)
    assert df.error.isna().all() and len(df) == 4

def test_distill_on_ray(cluster, tmp_path):
    "A distilled task starts once the driver has recorded its dense run, and learns from the same teacher as under the sequential executor"
    kw = dict(TINY, arms='scratch', distill=True)
    seq = run_study(out=tmp_path/'seq', bar=False, log=False, plot=False, cpus_per_run=1, **kw)
    df = run_study(out=tmp_path/'ray', bar=False, log=False, plot=False, executor='ray', cpus_per_run=1, **kw)
    assert len(df) == 2 and df.error.isna().all() and df.distill_alpha.tolist()[1] == 0.5
    same(df, seq)  # the same teacher, loaded from the same saved weights: the same student
    assert [p.name for p in (tmp_path/'ray'/'weights').iterdir()] == [p.name for p in (tmp_path/'seq'/'weights').iterdir()]

"The benchmark scripts import what they use: a renamed or moved fastprune name breaks them here, not on the day someone runs them"
import importlib.util, sys
from pathlib import Path
import pytest

BENCH = Path(__file__).parent.parent/'bench'

@pytest.mark.parametrize('script', sorted(p.name for p in BENCH.glob('*.py')))
def test_bench_script_imports(script):
    if script == 'vs_fasterai.py': pytest.importorskip('fasterai')
    spec = importlib.util.spec_from_file_location(f'bench_{script[:-3]}', BENCH/script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # runs the imports and definitions; `main` runs only under __main__
    assert callable(getattr(mod, 'main', None)), f'{script} has no main()'

"""The package users depend on: the wheel builds, says what it is, declares what it imports, and works in a fresh virtual
environment that has only its runtime dependencies.

Not collected by the default `pytest` run (`norecursedirs` in pyproject.toml): installing PyTorch into a new environment takes
minutes. `make wheel-test` runs it; CI does.
"""
import ast, email, os, re, subprocess, sys, sysconfig, venv, zipfile
from importlib import metadata
from pathlib import Path
import pytest

root = Path(__file__).resolve().parents[2]
dev_only = {'nbdev', 'pytest', 'pytest-xdist', 'hypothesis', 'nbconvert', 'selenium', 'build', 'execnb'}

_env = {k:v for k,v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'VIRTUAL_ENV')}  # nothing of this environment leaks in

def run(*args, **kw)->str:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=_env, **kw)
    assert r.returncode == 0, f'{" ".join(map(str, args))} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    return r.stdout

def _name(req:str)->str: return re.split(r'[\s<>=!~;\[(]', req, 1)[0].lower().replace('_', '-')

@pytest.fixture(scope='module')
def wheel(tmp_path_factory)->Path:
    "The wheel `python -m build` makes from the sdist, as a release would"
    out = tmp_path_factory.mktemp('dist')
    run(sys.executable, '-m', 'build', '--outdir', out, root)
    whl, = out.glob('fastprune-*.whl')
    return whl

@pytest.fixture(scope='module')
def meta(wheel):
    with zipfile.ZipFile(wheel) as z:
        fn, = [n for n in z.namelist() if n.endswith('.dist-info/METADATA')]
        return email.message_from_bytes(z.read(fn))

def test_metadata(meta):
    version = re.search(r'__version__\s*=\s*"([^"]+)"', (root/'fastprune'/'__init__.py').read_text()).group(1)
    assert meta['Name'] == 'fastprune' and meta['Version'] == version
    assert meta['License-Expression'] == 'Apache-2.0' and 'LICENSE' in meta.get_all('License-File')
    assert meta['Requires-Python'] == '>=3.11'
    cls = meta.get_all('Classifier')
    assert 'Development Status :: 3 - Alpha' in cls and 'Programming Language :: Python :: 3.11' in cls
    urls = dict(u.split(', ', 1) for u in meta.get_all('Project-URL'))
    assert {'Repository', 'Documentation', 'Changelog', 'Issues'} <= set(urls), urls
    assert meta['Description-Content-Type'] == 'text/markdown'
    assert meta.get_payload().lstrip().startswith('# fastprune') and 'SparsifyCallback(sparsity=80' in meta.get_payload()

def _guarded(t:ast.Try)->bool:
    "Whether `try` block `t` handles a missing module: its import is optional, with its own message"
    names = {getattr(h.type, 'id', None) for h in t.handlers} | {getattr(e, 'id', None) for h in t.handlers if isinstance(h.type, ast.Tuple) for e in h.type.elts}
    return bool(names & {'ImportError', 'ModuleNotFoundError', 'Exception', None})

def _imports()->dict:
    "Top-level names of the third-party modules fastprune imports: at module level ('top'), inside functions ('lazy'), or under `try` ('optional')"
    res = dict(top=set(), lazy=set(), optional=set())
    def visit(n, lazy, optional):
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module] if not n.level else []
            res['optional' if optional else 'lazy' if lazy else 'top'] |= {m.split('.')[0] for m in mods}
        for c in ast.iter_child_nodes(n):
            visit(c, lazy or isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)), optional or (isinstance(n, ast.Try) and c in n.body and _guarded(n)))
    for f in (root/'fastprune').glob('*.py'): visit(ast.parse(f.read_text()), False, False)
    skip = set(sys.stdlib_module_names) | {'fastprune', '__future__'}
    return {k: v - skip for k,v in res.items()}

def _dists(mods:set)->set:
    "The distributions (as installed in this environment) that provide modules `mods`"
    pd = metadata.packages_distributions()
    missing = mods - set(pd)
    assert not missing, f'fastprune imports {sorted(missing)}, which no installed distribution provides'
    return {_name(d) for m in mods for d in pd[m]}

def _closure(names:set)->set:
    "`names` and everything they require, transitively (extras left out)"
    res,todo = set(),list(names)
    while todo:
        n = todo.pop()
        if n in res: continue
        res.add(n)
        try: reqs = metadata.requires(n) or []
        except metadata.PackageNotFoundError: continue
        todo += [_name(r) for r in reqs if 'extra ==' not in r]
    return res

def test_dependencies_are_what_the_library_imports(meta):
    reqs = meta.get_all('Requires-Dist')
    runtime = {_name(r) for r in reqs if 'extra ==' not in r}
    assert not runtime & dev_only, f'test-only packages among the runtime dependencies: {sorted(runtime & dev_only)}'
    assert dev_only <= {_name(r) for r in reqs if 'extra == "dev"' in r}, 'the dev extra lacks a tool of the docs or tests'
    imps = _imports()
    top = _dists(imps['top'])
    assert top <= runtime, f'imported at module level but not declared: {sorted(top - runtime)}'
    lazy = _dists(imps['lazy'])
    extras = {_name(r) for r in reqs if 'extra ==' in r and 'extra == "dev"' not in r}  # deploy, ray: each entry point first checks its extra, naming it
    assert lazy <= _closure(runtime) | extras, f'imported inside functions, and neither installed with the runtime dependencies nor in an extra: {sorted(lazy - _closure(runtime) - extras)}'
    unused = runtime - top - lazy - {_name(d) for m in imps['optional'] for d in metadata.packages_distributions().get(m, [])}
    assert not unused, f'declared but never imported by fastprune: {sorted(unused)}'

def _constraints(tmp_path)->Path:
    "The versions of this environment, so that the fresh one gets what the tests ran with"
    pins = [f'{d.metadata["Name"]}=={d.version}' for d in metadata.distributions()
            if d.metadata['Name'] and _name(d.metadata['Name']) != 'fastprune' and '+' not in d.version]
    fn = tmp_path/'constraints.txt'
    fn.write_text('\n'.join(sorted(set(pins))) + '\n')
    return fn

def test_fresh_venv_without_dev_extra(wheel, tmp_path):
    env = tmp_path/'venv'
    venv.create(env, with_pip=True)  # no --system-site-packages: only what the wheel pulls in
    py,bin_ = env/'bin'/'python',env/'bin'
    run(py, '-m', 'pip', 'install', '-q', '--no-compile', '-c', _constraints(tmp_path), wheel)  # bytecode is compiled on import, for what is used
    out = run(py, '-c', 'import importlib.util as u, fastprune; from fastprune.all import *; '
                        'print(fastprune.__file__); print(SparsifyCallback(sparsity=80).sparsity); '
                        'print(*[m for m in ("nbdev", "pytest", "hypothesis", "nbconvert", "selenium") if u.find_spec(m)])', cwd=tmp_path)
    file,sp,dev = (out.splitlines() + [''])[:3]
    assert Path(file).is_relative_to(env), f'imported fastprune from {file}, not from the fresh environment'
    assert sp == '80.0' and not dev.strip(), out
    help_ = run(bin_/'fastprune', 'study', '--help', cwd=tmp_path)
    assert 'usage: fastprune study' in help_ and '--sparsities' in help_

"The pieces of `tools/docs.py` that turn executed notebooks into pages, on small inputs (the whole build is `make docs`)"
import sys
from pathlib import Path
import yaml
sys.path.insert(0, str(Path(__file__).resolve().parents[1]/'tools'))
import docs

def test_clean_stream():
    "fastprogress redraws with carriage returns: a page shows what a terminal would"
    assert docs.clean_stream('█\repoch  train_loss\n0  1.5\n███') == 'epoch  train_loss\n0  1.5'
    assert docs.clean_stream('a |--| 10%\ra |██| 100%\n') == 'a |██| 100%\n'

def test_clean_stderr():
    w = '/v/lib/python3.11/site-packages/torch/jit/_script.py:1491: FutureWarning: deprecated\n  warnings.warn(\n'
    assert docs.clean_stderr(w + 'mine\n') == 'mine\n'
    assert docs.clean_stderr('/home/me/x.py:3: UserWarning: yours\n  warn()\n') == '/home/me/x.py:3: UserWarning: yours\n  warn()\n'

def test_clean_md():
    "nbdev's source links carry pandoc attributes, which CommonMark would print"
    md = '[source](https://github.com/a/b/blob/main/x.py#L3){target="_blank" style="float:right"}\n\n### f'
    assert docs.clean_md(md) == '[source](https://github.com/a/b/blob/main/x.py#L3)\n\n### f'

def test_slug():
    "The ids nbdev's doc links point to (pandoc's rule), unique within a page"
    seen = set()
    assert docs.slug('SparsifyCallback', seen) == 'sparsifycallback'
    assert docs.slug('<code>Learner.sparsity_report</code>', seen) == 'learner.sparsity_report'
    assert docs.slug('1. What it does, and why?', seen) == 'what-it-does-and-why'
    assert docs.slug('SparsifyCallback', seen) == 'sparsifycallback-1'

def test_out_path():
    assert docs.out_path(docs.nbs/'05_callback.ipynb').as_posix() == 'callback.html'
    assert docs.out_path(docs.nbs/'tutorials'/'choosing_a_schedule.ipynb').as_posix() == 'tutorials/choosing_a_schedule.html'

def test_sidebar_lists_notebooks_that_exist():
    "Every entry of nbs/sidebar.yml (read by quarto and by tools/docs.py) is a notebook of the site"
    def hrefs(items):
        for o in items:
            if isinstance(o, dict) and 'section' in o: yield from hrefs(o['contents'])
            else: yield o['href'] if isinstance(o, dict) else o
    spec = yaml.safe_load((docs.nbs/'sidebar.yml').read_text())['website']['sidebar']['contents']
    pages = {p.relative_to(docs.nbs).as_posix() for p in docs.nb_paths()}
    missing = [h for h in hrefs(spec) if h not in pages]
    assert not missing, f'nbs/sidebar.yml lists notebooks that do not exist: {missing}'

def _mixed_import_cells(nb_path):
    "Non-exported code cells that import and also do something else: nbdev's doc processing runs every cell with an import"
    import ast, json
    res = []
    for c in json.loads(nb_path.read_text())['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] != 'code' or '#| export' in src: continue
        t = ast.parse('\n'.join(l for l in src.splitlines() if not l.startswith('#|')))
        if any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(t)) and any(not isinstance(n, (ast.Import, ast.ImportFrom)) for n in t.body):
            res.append(src.splitlines()[0])
    return res

def test_imports_have_cells_of_their_own():
    "`nbdev-docs` (quarto) executes, out of context, every cell that contains an import: such a cell must hold only imports"
    bad = {p.relative_to(docs.nbs).as_posix(): c for p in docs.nb_paths() if (c := _mixed_import_cells(p))}
    assert not bad, f'cells mixing imports with other code (move the imports to a cell of their own): {bad}'

def test_mixed_import_cells_are_found(tmp_path):
    import json
    cell = lambda s: dict(cell_type='code', metadata={}, outputs=[], execution_count=None, source=s)
    fn = tmp_path/'x.ipynb'
    fn.write_text(json.dumps(dict(cells=[cell('import os'), cell('#| export\nimport re\nx = 1'), cell('def f():\n    import re\n    return re'),
                                         cell('from a import b\nb()')], metadata={}, nbformat=4, nbformat_minor=5)))
    assert _mixed_import_cells(fn) == ['def f():', 'from a import b']

def test_nbdev_proc_nbs(tmp_path):
    "What `nbdev-docs` does before quarto renders: nbdev's processors, with the cells they execute, succeed on every notebook"
    import shutil, subprocess
    dst = tmp_path/'repo'
    shutil.copytree(docs.root, dst, ignore=shutil.ignore_patterns('.venv', '.git', '_proc', '_docs', '_docs_cache', 'docs', 'build', 'dist', '*.egg-info', '__pycache__', 'study_results'))
    exe = Path(sys.executable).parent/'nbdev-proc-nbs'
    r = subprocess.run([str(exe), '--n-workers', '1'], cwd=dst, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (dst/'_proc'/'05_callback.ipynb').is_file() and (dst/'_proc'/'_quarto.yml').is_file()

def test_readme_is_index_notebook(tmp_path):
    "README.md is `make readme`'s rendering of nbs/index.ipynb: its prose and code, in order, with the outputs of a run in between"
    import json, re, readme
    from nbdev.config import get_config
    cfg = get_config()
    nb = json.loads((docs.nbs/'index.ipynb').read_text())
    title,desc = re.match(r'# (.+)\n> (.+)', ''.join(nb['cells'][0]['source'])).groups()  # nbdev's frontmatter: the first cell
    nb['cells'] = [c for c in nb['cells'][1:] if not re.search(r'^#\|\s*hide\s*$', ''.join(c['source']), re.M)]  # nbdev drops hidden cells
    for c in nb['cells']: c.pop('outputs', None)
    expect = readme.render(dict(nb=nb, fm=dict(title=title, description=desc)), (cfg.doc_host + cfg.doc_baseurl).rstrip('/') + '/', img_dir=tmp_path)
    unlink = lambda t: re.sub(r'\[(`[^`]+`)\]\([^)\s]+\)', r'\1', t).strip()  # `make readme` links the names the docs define; the prose is what must match
    have = (docs.root/'README.md').read_text().split('\n\n')
    it = iter(have)
    missing = [p for p in expect.split('\n\n') if not any(unlink(p) == unlink(h) for h in it)]
    assert not missing, f'README.md is out of date with nbs/index.ipynb (run `make readme`); first difference: {missing[0][:300]!r}'

def test_cold_cache_starts_the_training_notebooks_first(tmp_path):
    "With nothing cached, `make docs` starts the notebooks that train most first, so that two workers finish together"
    import json
    def nb(name, *srcs):
        fn = tmp_path/name
        fn.write_text(json.dumps(dict(cells=[dict(cell_type='code', metadata={}, outputs=[], execution_count=None, source=s) for s in srcs],
                                      metadata={}, nbformat=4, nbformat_minor=5)))
        return fn
    none = nb('a.ipynb', 'x = 1', 'sp.prune(50)')
    one = nb('b.ipynb', 'learn.fit_one_cycle(1)')
    loop = nb('c.ipynb', 'def run(s): learn.fit_one_cycle(2)', 'for s in scheds: res[s] = run(s)')
    assert docs._trains(none) == 0 < docs._trains(one) < docs._trains(loop)

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

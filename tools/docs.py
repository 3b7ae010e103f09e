"""Build the documentation site into `docs/` without quarto, which can't be installed where its download server is out of reach.

It does what `nbdev-docs` does, with tools from PyPI:

1. nbdev's own doc processors (`FilterDefaults`: frontmatter, a `show_doc` cell after each exported definition, hidden and exported
   cells removed, backticked names linked), with *every* cell executed, as `nbdev-test` runs them, not only the `show_doc` ones;
2. nbconvert's `basic` HTML template for each page's body;
3. a page around it: the navigation of `nbs/sidebar.yml` (the file quarto reads too), the title, and links made relative.

Executed notebooks are cached in `_docs_cache/`, keyed on the notebook, the library's sources and the files pages read
(`bench/*.md`, `docs/study/`), so a second build only renders. Run: `python tools/docs.py [--n-workers 2] [--force] [NB ...]`;
with notebooks named, only those are executed and pages without a cached run are left out.
"""
import argparse, hashlib, html, json, os, re, shutil, sys, time, traceback
from pathlib import Path

root = Path(__file__).resolve().parents[1]
nbs,site,cache = root/'nbs',root/'docs',root/'_docs_cache'
deps = ['fastprune/**/*.py', 'bench/*.md', 'docs/study/*']  # what an executed page may show
EXEC = 1  # bump when `execute` changes what it produces: every cached run is stale then

def nb_paths():
    "Every notebook of the site, as nbdev finds them (folders and files starting with `_` or `.` are skipped)"
    return sorted(p for p in nbs.rglob('*.ipynb') if not any(o[0] in '_.' for o in p.relative_to(nbs).parts))

def out_path(src:Path)->Path:
    "Where quarto would write notebook `src`, relative to the site: numeric prefix dropped, `.html`"
    rel = src.relative_to(nbs)
    return rel.with_name(re.sub(r'^\d+_', '', rel.stem) + '.html')

def _key(src:Path, dep_hash:str)->str: return hashlib.sha1(src.read_bytes() + f'{dep_hash} {EXEC}'.encode()).hexdigest()

def _dep_hash()->str:
    h = hashlib.sha1()
    for pat in deps:
        for f in sorted(root.glob(pat)):
            if f.is_file() and '__pycache__' not in f.parts: h.update(str(f.relative_to(root)).encode()); h.update(f.read_bytes())
    return h.hexdigest()

# --- Executing: runs in a fresh process per notebook

def execute(src:str)->dict:
    "Notebook `src` through nbdev's doc processors with every cell executed: the notebook as a dict, its frontmatter, seconds taken"
    import fastprogress.fastprogress as fpp
    from fastcore.nbio import read_nb, nb2dict
    from nbdev.config import get_config
    from nbdev.process import Processor
    from nbdev.processors import FilterDefaults, exec_show_docs, add_show_docs, _do_eval
    from nbdev.test import _skip_cell
    from execnb.shell import CaptureShell
    src,t0 = Path(src),time.perf_counter()
    os.chdir(src.parent)  # where nbdev-test runs it
    # This worker was spawned, so its own children would be too: each DataLoader worker would import torch and fastai again,
    # every epoch (a fit ran 2x slower than under nbdev-test). Fork them, as a notebook's kernel does on Linux.
    if sys.platform == 'linux': import multiprocessing; multiprocessing.set_start_method('fork', force=True)
    fpp.NO_BAR = True  # fastai's console bars redraw themselves with '\r' hundreds of times a fit; its results table still prints
    cfg = get_config()
    flags,timeout = cfg.tst_flags.split(),int(cfg.get('cell_timeout', 0)) or None

    class order_show_docs(Processor):
        "nbdev inserts the `show_doc` cells of one export cell in reverse order: put them back in the order of the source"
        def begin(self):
            cs,i = self.nb.cells,0
            while i < len(cs):
                j = i
                while j < len(cs) and getattr(cs[j], 'has_sd', False): j += 1
                if j > i+1: cs[i:j] = cs[i:j][::-1]
                i = max(j, i+1)

    class exec_all(Processor):
        "Run the cells nbdev-test runs, and the `show_doc` cells nbdev added"
        def begin(self):
            self.k = CaptureShell(timeout=timeout)
            self.k.run('from nbdev.showdoc import show_doc')
            self.skip,self.fm_skip = _skip_cell(self.nb, flags),str(getattr(self.nb, 'frontmatter_', {}).get('skip_exec', '')).lower() == 'true'
        def __call__(self, cell):
            if cell.cell_type != 'code' or not cell.source: return
            sd = getattr(cell, 'has_sd', False)
            if self.fm_skip and not (sd or _do_eval(cell)): return  # a page that can't run here: only what `show_doc` needs
            if not self.fm_skip and self.skip(cell) and not sd: return
            self.k.cell(cell)
            if (e := self.k.exc) is not None:
                tb = ''.join(traceback.format_exception(e)) if isinstance(e, BaseException) else str(e)
                raise RuntimeError(f'{src.relative_to(root)}, cell {cell.idx_}:\n{cell.source}\n\n{tb}')

    class Procs(FilterDefaults):
        def base_procs(self):
            ps = [exec_all if p is exec_show_docs else p for p in super().base_procs()]
            ps.insert(ps.index(add_show_docs)+1, order_show_docs)
            return ps

    nb = read_nb(src)
    Procs()(nb)
    return dict(nb=nb2dict(nb), fm=dict(getattr(nb, 'frontmatter_', {})), secs=time.perf_counter()-t0)

def _trains(src:Path)->int:
    "How much training notebook `src` does, roughly, to start the longest first when nothing is cached: fit calls, and loops of them"
    cells = [''.join(c['source']) for c in json.loads(src.read_text())['cells'] if c['cell_type'] == 'code']
    fit = r'\.(?:fit\w*|fine_tune)\(|\brun\('
    loop = r'\bfor\b[^\n]*:[^\n]*(?:' + fit + ')'  # a one-line loop of fits
    return sum(len(re.findall(fit, c)) + 5*bool(re.search(r'\bfor\b', c) and re.search(fit, c)) + 10*len(re.findall(loop, c)) for c in cells)

def run_all(srcs:list, n_workers:int=2, force:bool=False, only=None)->dict:
    "Executed notebooks by source path, from the cache where their key matches, else run (longest first, one process each)"
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context
    cache.mkdir(exist_ok=True)
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # two cores, two notebooks at once: one torch thread each
    dh,res,todo = _dep_hash(),{},[]
    for s in srcs:
        fn = cache/(str(s.relative_to(nbs)).replace('/', '__') + '.json')
        d = json.loads(fn.read_text()) if fn.exists() else None
        k = _key(s, dh)
        if d and d['key'] == k and not (force and (only is None or s in only)): res[s] = d
        elif only is None or s in only: todo.append((s, fn, k, d['secs'] if d else 1e6*_trains(s)))
        else: print(f'docs: leaving out {s.relative_to(root)} (not executed yet: name it or build all)')
    todo.sort(key=lambda o: -o[3])
    if not todo: return res
    print(f'docs: executing {len(todo)} notebook(s) with {n_workers} worker(s)', flush=True)
    failed = []
    with ProcessPoolExecutor(n_workers, mp_context=get_context('spawn'), max_tasks_per_child=1) as ex:
        futs = {ex.submit(execute, str(s)): (s,fn,k) for s,fn,k,_ in todo}
        for f in as_completed(futs):
            s,fn,k = futs[f]
            try: d = f.result()
            except Exception as e: failed.append(s); print(f'docs: FAILED {s.relative_to(root)}\n{e}', file=sys.stderr, flush=True); continue
            d['key'] = k
            fn.write_text(json.dumps(d))
            res[s] = d
            print(f'docs: executed {s.relative_to(root)} in {d["secs"]:.0f} s', flush=True)
    if failed: sys.exit(f'docs: {len(failed)} notebook(s) failed: {", ".join(str(s.relative_to(root)) for s in failed)}')
    return res

# --- Rendering

_bar_fill = re.compile(r'^█+$')
def clean_stream(txt:str)->str:
    "What a terminal shows of `txt`: each line as its last carriage return left it"
    lines = [l.rsplit('\r', 1)[-1].rstrip() for l in txt.split('\n')]
    return '\n'.join(l for l in lines if not _bar_fill.match(l))

_dep_warn = re.compile(r'^\S*/site-packages/\S+:\d+: \w*Warning: .*\n(?:[ \t]+.*\n?)?', re.M)
def clean_stderr(txt:str)->str:
    "`txt` without the warnings that installed packages raise about themselves (deprecations inside torch, timm, ...)"
    return _dep_warn.sub('', txt)

def clean_md(md:str)->str:
    "Markdown that is not CommonMark: pandoc attributes after links (`[source](url){target=...}`)"
    return re.sub(r'(\]\([^)\s]*\))\{[^}]*\}', r'\1', md)

def _directives(src:str)->dict: return dict(re.findall(r'^#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$', src, re.M))

def _nb_for_nbconvert(nb:dict):
    "A valid nbformat notebook: directives stripped, hidden inputs tagged, streams cleaned, raw cells (frontmatter) dropped"
    import nbformat
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw': continue
        if c['cell_type'] == 'markdown': cells.append(dict(id=f'c{len(cells)}', cell_type='markdown', metadata={}, source=clean_md(src))); continue
        d = _directives(src)
        tags = ['hide-input'] if d.get('echo', '').lower() == 'false' or 'hide_input' in d else []
        outs = []
        for o in c.get('outputs', []):
            o = dict(o)
            if o['output_type'] == 'stream':
                o['text'] = clean_stream(''.join(o['text']))
                if o.get('name') == 'stderr': o['text'] = clean_stderr(o['text'])
                if not o['text'].strip(): continue
            elif 'data' in o:
                o['data'] = dict(o['data'])
                if 'text/markdown' in o['data']: o['data']['text/markdown'] = clean_md(''.join(o['data']['text/markdown']))
            outs.append(o)
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        cells.append(dict(id=f'c{len(cells)}', cell_type='code', metadata=dict(tags=tags), source=code, outputs=outs, execution_count=None))
    return nbformat.reads(json.dumps(dict(cells=cells, metadata=nb.get('metadata', {}), nbformat=4, nbformat_minor=5)), as_version=4)

def slug(text:str, seen:set)->str:
    "pandoc's (so quarto's and nbdev's) identifier of a heading: lowercased, punctuation but `_-.` dropped, spaces to dashes, unique"
    t = html.unescape(re.sub(r'<[^>]+>', '', text)).strip().lower()
    t = re.sub(r'^[^a-z]+', '', re.sub(r'\s+', '-', re.sub(r'[^\w\s.-]', '', t))) or 'section'
    s,i = t,0
    while s in seen: i += 1; s = f'{t}-{i}'
    seen.add(s)
    return s

_hdr = re.compile(r'<h([1-6]) id="[^"]*">(.*?)<a class="anchor-link" href="#[^"]*">¶</a></h\1>', re.S)
def fix_headings(body:str)->str:
    seen = set()
    def f(m):
        s = slug(m.group(2), seen)
        return f'<h{m.group(1)} id="{s}">{m.group(2)}<a class="anchor-link" href="#{s}">¶</a></h{m.group(1)}>'
    return _hdr.sub(f, body)

class Site:
    "The pages of the site (by source notebook), the links between them, and the frame around each page"
    def __init__(self, pages:dict, cfg):
        self.pages,self.cfg = pages,cfg  # pages: source path -> dict(out=, title=, desc=)
        self.by_out = {p['out'].as_posix(): p for p in pages.values()}
        self.doc_url = (cfg.doc_host + cfg.doc_baseurl).rstrip('/') + '/'

    def rel(self, target:str, page_out:Path)->str: return os.path.relpath(target, page_out.parent.as_posix() or '.')

    def fix_url(self, url:str, src:Path, page_out:Path, attr:str)->str:
        "A link or image source of page `src` as it works from `docs/`"
        if url.startswith(self.doc_url): return 'nbdev:' + (url[len(self.doc_url):] or 'index.html')  # nbdev's doc links: see `doc_links`
        if not url or re.match(r'^([a-z]+:|#|/)', url): return url
        path,frag = (url.split('#', 1) + [''])[:2]
        frag = f'#{frag}' if frag else ''
        if os.path.normpath(page_out.parent/path) in self.by_out: return url  # a quarto-style link to a page's `.html`
        tgt = (src.parent/path).resolve()  # anything else is relative to the notebook
        if tgt in self.pages: return self.rel(self.pages[tgt]['out'].as_posix(), page_out) + frag
        if tgt.is_relative_to(site): return self.rel(tgt.relative_to(site).as_posix(), page_out) + frag
        if tgt.is_relative_to(root) and tgt.exists():
            if attr == 'src':  # an image from elsewhere in the repository: copied next to the pages
                dst = site/'assets'/tgt.name
                dst.parent.mkdir(exist_ok=True); shutil.copyfile(tgt, dst)
                return self.rel(f'assets/{tgt.name}', page_out)
            return f'{self.cfg.git_url}/blob/{self.cfg.branch}/{tgt.relative_to(root).as_posix()}{frag}'  # a file of the repository
        return url

    def nav(self, cur:Path)->str:
        "The sidebar, from `nbs/sidebar.yml`; notebooks it does not list go under 'More'"
        import yaml
        spec = yaml.safe_load((nbs/'sidebar.yml').read_text())['website']['sidebar']['contents']
        listed = set()
        def item(o):
            text = None
            if isinstance(o, dict) and 'section' in o:
                inner = ''.join(filter(None, map(item, o.get('contents', []))))
                return f'<li class="section"><span>{html.escape(o["section"])}</span><ul>{inner}</ul></li>' if inner else ''
            if isinstance(o, dict): text,o = o.get('text'),o['href']
            p = self.pages.get((nbs/o).resolve())
            if p is None: return ''  # a page not built (yet)
            listed.add(p['out'])
            cls = ' class="active"' if p['out'] == cur else ''
            return f'<li><a href="{self.rel(p["out"].as_posix(), cur)}"{cls}>{html.escape(text or p["title"])}</a></li>'
        body = ''.join(filter(None, map(item, spec)))
        more = [s.relative_to(nbs).as_posix() for s,p in sorted(self.pages.items()) if p['out'] not in listed]
        if more: body += item(dict(section='More', contents=more))
        return f'<ul>{body}</ul>'

    def page(self, src:Path, body:str)->str:
        p,name = self.pages[src],self.cfg.title
        cur = p['out']
        full = name if cur.as_posix() == 'index.html' else f'{p["title"]} – {name}'
        desc = f'<p class="description">{_inline_md(p["desc"])}</p>' if p['desc'] else ''
        css = self.rel('style.css', cur)
        return f'''<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(full)}</title><meta name="description" content="{html.escape(p["desc"] or self.cfg.description)}">
<link rel="stylesheet" href="{css}"></head>
<body><nav class="sidebar"><a class="brand" href="{self.rel("index.html", cur)}">{html.escape(name)}</a>{self.nav(cur)}</nav>
<main><header><h1 class="title">{html.escape(p["title"])}</h1>{desc}</header>
{body}
<footer>Built by <code>make docs</code> from <code>nbs/{src.relative_to(nbs).as_posix()}</code>, executed.</footer></main></body></html>
'''

def _inline_md(s:str)->str: return re.sub(r'`([^`]+)`', r'<code>\1</code>', html.escape(s))

def doc_links(body:str, page_out:Path, ids:dict, s:Site)->str:
    """nbdev links every backticked name it knows to its anchor, documented or not (a method inside a class, a private helper):
    such a link goes to the nearest documented parent (`Learner.fit` -> `Learner`), else to the page"""
    def f(m):
        path,_,frag = m.group(1).partition('#')
        while frag and frag not in ids.get(path, ()): frag = frag.rpartition('.')[0]
        return f'href="{s.rel(path, page_out)}{"#"+frag if frag else ""}"'
    return re.sub(r'href="nbdev:([^"]*)"', f, body)

def render(src:Path, d:dict, s:Site)->str:
    "The body of the page of notebook `src`, its nbdev doc links still to resolve"
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    ex = HTMLExporter(template_name='basic', exclude_input_prompt=True, exclude_output_prompt=True)
    ex.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'hide-input'}), enabled=True)
    body,_ = ex.from_notebook_node(_nb_for_nbconvert(d['nb']))
    body = fix_headings(body)
    out = s.pages[src]['out']
    body = re.sub(r'\b(href|src)="([^"]*)"', lambda m: f'{m.group(1)}="{s.fix_url(html.unescape(m.group(2)), src, out, m.group(1))}"', body)
    return re.sub(r'<a href="(https?://[^"]*)"', r'<a href="\1" target="_blank" rel="noopener"', body)

def style()->str:
    from pygments.formatters import HtmlFormatter
    return (Path(__file__).parent/'docs.css').read_text() + HtmlFormatter(style='friendly').get_style_defs('.highlight')

def build(n_workers:int=2, force:bool=False, only=None):
    from nbdev.config import get_config
    t0,cfg = time.perf_counter(),get_config()
    srcs = [s.resolve() for s in nb_paths()]
    only = None if not only else {Path(o).resolve() for o in only}
    runs = run_all(srcs, n_workers, force, only)
    pages = {}
    for s in srcs:
        if s not in runs: continue
        fm = runs[s]['fm']
        pages[s] = dict(out=out_path(s), title=str(fm.get('title') or s.stem), desc=str(fm.get('description') or ''))
    st = Site(pages, cfg)
    old = set(json.loads((cache/'site.json').read_text())) if (cache/'site.json').exists() else set()
    bodies = {s: render(s, runs[s], st) for s in pages}
    ids = {pages[s]['out'].as_posix(): set(re.findall(r'\sid="([^"]+)"', b)) for s,b in bodies.items()}
    for s,b in bodies.items():
        fn = site/pages[s]['out']
        fn.parent.mkdir(parents=True, exist_ok=True)
        fn.write_text(st.page(s, doc_links(b, pages[s]['out'], ids, st)))
    (site/'style.css').write_text(style())
    new = {p['out'].as_posix() for p in pages.values()}
    if not only:  # a whole build: drop pages whose notebook is gone
        for f in old - new: (site/f).unlink(missing_ok=True)
    (cache/'site.json').write_text(json.dumps(sorted(new | (old if only else set()))))
    print(f'docs: wrote {len(pages)} pages to {site.relative_to(root)}/ in {time.perf_counter()-t0:.0f} s')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('nbs', nargs='*', help='execute only these notebooks (default: every notebook whose cached run is stale)')
    p.add_argument('--n-workers', type=int, default=2, help='notebooks executed at once (default: 2)')
    p.add_argument('--force', action='store_true', help='execute even notebooks whose cached run is fresh')
    a = p.parse_args()
    build(a.n_workers, a.force, a.nbs)

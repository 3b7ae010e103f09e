"""The documentation site in a real browser: headless Chromium opens pages of `docs/` over HTTP and checks what a reader sees.

Not collected by the default `pytest` run (`norecursedirs` in pyproject.toml): it needs the built site and Chromium.
`make browser-test` builds the site if it is missing and runs this file. Chromium and its driver are Debian's packages
`chromium` and `chromium-driver` (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `$CHROMIUM` and `$CHROMEDRIVER` override them).
"""
import functools, os, re, threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import urlopen
import pytest

site = Path(os.environ.get('FASTPRUNE_SITE', Path(__file__).resolve().parents[2]/'docs'))  # the built site (`make docs`)
chromium,chromedriver = os.environ.get('CHROMIUM', '/usr/bin/chromium'),os.environ.get('CHROMEDRIVER', '/usr/bin/chromedriver')

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

@pytest.fixture(scope='module')
def base():
    "The site served over HTTP on a free local port"
    if not (site/'index.html').is_file(): pytest.fail(f'{site}/index.html is missing: build the site with `make docs` first')
    srv = ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{srv.server_address[1]}/'
    srv.shutdown(); srv.server_close()

@pytest.fixture(scope='module')
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    for f in (chromium, chromedriver):
        if not Path(f).is_file(): pytest.fail(f'{f} not found: `apt-get install chromium chromium-driver`, or set $CHROMIUM and $CHROMEDRIVER')
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--window-size=1280,1000'): opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(chromedriver), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()

def _open(browser, url):
    browser.get(url)
    return browser.execute_script('return document.readyState') == 'complete'

def _images(browser)->list:
    "`(src, naturalWidth)` of every image of the page, once each has loaded or failed"
    return browser.execute_async_script('''
        const done = arguments[arguments.length-1];
        const imgs = Array.from(document.images);
        Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })))
          .then(() => done(imgs.map(i => [i.currentSrc.slice(0, 80), i.naturalWidth])));''')

def _plots_ok(browser, page):
    imgs = _images(browser)
    broken = [s for s,w in imgs if not w]
    assert not broken, f'{page}: images that did not load: {broken}'
    assert any(w > 100 for _,w in imgs), f'{page}: no plot rendered ({len(imgs)} images)'

def test_home(browser, base):
    assert _open(browser, base)
    assert browser.title == 'fastprune'
    h1 = browser.find_element('css selector', 'main h1').text
    assert h1 == 'fastprune'
    code = ' '.join(e.text for e in browser.find_elements('css selector', 'main pre'))
    assert 'SparsifyCallback(sparsity=80' in code and 'sparsity_report' in code
    # the example's results table and report are there, executed
    assert re.search(r'epoch\s+train_loss\s+valid_loss\s+accuracy\s+sparsity', code), code[:500]
    nav = [a.text for a in browser.find_elements('css selector', 'nav.sidebar a')]
    for t in ('Prune while you train', 'Choosing a schedule', 'Migrating from fasterai', 'SparsifyCallback', 'Schedules'): assert t in nav, nav
    imgs = _images(browser)
    assert all(w for _,w in imgs), f'home: images that did not load: {[s for s,w in imgs if not w]}'

def test_callback_page(browser, base):
    assert _open(browser, urljoin(base, 'callback.html'))
    assert browser.title == 'SparsifyCallback – fastprune'
    sigs = [e.text for e in browser.find_elements('css selector', 'main .highlight pre') if e.text.startswith('def SparsifyCallback(')]
    assert sigs, 'no rendered SparsifyCallback signature'
    sig = sigs[0]
    for p in ("sparsity:float | dict", "granularity:str | Granularity='weight'", "schedule", "min_delta:float=5.0"): assert p in sig, sig
    assert '# Target sparsity in percent' in sig  # docments: each parameter's comment is shown with it
    h = browser.find_element('id', 'sparsifycallback')  # the anchor nbdev's doc links point to
    assert h.tag_name == 'h3' and h.text.startswith('SparsifyCallback')
    assert 'active' in browser.find_element('link text', 'SparsifyCallback').get_attribute('class')
    _plots_ok(browser, 'callback.html')

def test_tutorial_and_navigation(browser, base):
    assert _open(browser, base)
    browser.find_element('link text', 'Choosing a schedule').click()
    assert browser.current_url.endswith('tutorials/choosing_a_schedule.html')
    assert browser.title == 'Choosing a schedule – fastprune'
    _plots_ok(browser, 'choosing_a_schedule.html')
    tables = browser.find_elements('css selector', 'main table.dataframe')
    assert any('one_cycle' in t.text for t in tables), 'no results table'
    browser.find_element('link text', 'Schedules').click()  # from a page one folder down, back up to an API page
    assert browser.title == 'Schedules – fastprune'
    _plots_ok(browser, 'schedules.html')

class _Links(HTMLParser):
    "Links, image sources and element ids of one page"
    def __init__(self):
        super().__init__(); self.links,self.ids = [],set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag in ('img', 'link', 'script') and (a.get('src') or a.get('href')): self.links.append(a.get('src') or a.get('href'))

def _fetch(url):
    try:
        with urlopen(url, timeout=30) as r: return r.status, r.read()
    except HTTPError as e: return e.code, b''

def test_no_broken_internal_link(base):
    "Crawl every page reachable from the home page: each internal link, image and stylesheet resolves, and so does each anchor"
    todo,status,ids,refs = [base],{},{},[]
    while todo:
        url = todo.pop()
        if url in status: continue
        status[url],body = _fetch(url)
        if status[url] != 200 or not url.endswith(('.html', '/')): continue
        p = _Links(); p.feed(body.decode())
        ids[url] = p.ids
        for l in p.links:
            if l.startswith('data:') or urlparse(l).scheme in ('http', 'https', 'mailto') and not l.startswith(base): continue
            tgt = urljoin(url, l)
            refs.append((url, tgt))
            todo.append(urldefrag(tgt)[0])
    assert len(ids) >= 10, f'only {len(ids)} pages reachable from the home page: {sorted(ids)}'
    broken = set()
    for page,tgt in refs:
        u,frag = urldefrag(tgt)
        if status[u] != 200: broken.add(f'{page} -> {tgt} (HTTP {status[u]})')
        elif frag and u in ids and frag not in ids[u]: broken.add(f'{page} -> {tgt} (no element with id {frag!r})')
    assert not broken, 'broken internal links:\n' + '\n'.join(sorted(broken))
    on_disk = {p.relative_to(site).as_posix() for p in site.rglob('*.html')}
    reached = {u[len(base):] or 'index.html' for u in ids}
    assert on_disk <= reached, f'pages no link leads to: {sorted(on_disk - reached)}'

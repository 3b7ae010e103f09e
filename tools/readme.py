"""Write README.md from nbs/index.ipynb, executed, without quarto (which cannot be installed here).

The notebook goes through the same executor as the site (`tools/docs.py`, and its cache): nbdev's processors, every cell run, fastai's
progress bars off. Markdown cells are copied with their links made to work from the repository's root (notebook links go to the
documentation site), code cells become ```python blocks, text outputs plain blocks, and images PNG files under docs/images/.
Cells marked `#| hide` run but are not shown; `#| echo: false` shows the output only. Run: `python tools/readme.py`.
"""
import base64, re, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import docs

root = docs.root

def _link(url:str, doc_url:str)->str:
    "A link of nbs/index.ipynb as it works from README.md: notebooks to their page on the site, files relative to the root"
    if not url or re.match(r'^([a-z]+:|#|/)', url): return url
    path,_,frag = url.partition('#')
    tgt = (docs.nbs/path).resolve()
    if tgt.suffix == '.ipynb': return doc_url + docs.out_path(tgt).as_posix() + (f'#{frag}' if frag else '')
    return tgt.relative_to(root).as_posix() + (f'#{frag}' if frag else '') if tgt.is_relative_to(root) else url

def render(d:dict, doc_url:str, img_dir=root/'docs'/'images', img_rel='docs/images')->str:
    fm = d['fm']
    out,n_img = [f'# {fm.get("title", "fastprune")}', f'> {fm["description"]}'] if fm.get('description') else [f'# {fm.get("title")}'],0
    for f in img_dir.glob('readme_*.png'): f.unlink()
    fix = lambda md: re.sub(r'(\]\()([^)\s]*)(\))', lambda m: m.group(1) + _link(m.group(2), doc_url) + m.group(3), docs.clean_md(md))
    for c in d['nb']['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'raw': continue
        if c['cell_type'] == 'markdown':
            if not src.startswith('<!-- WARNING'): out.append(fix(src).strip())
            continue
        dr = docs._directives(src)
        code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        if code and not (dr.get('echo', '').lower() == 'false' or 'hide_input' in dr): out.append(f'```python\n{code}\n```')
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream':
                txt = docs.clean_stream(''.join(o['text']))
                if o.get('name') == 'stderr': txt = docs.clean_stderr(txt)
                if txt.strip(): out.append('```\n' + txt.strip('\n') + '\n```')
            d_ = o.get('data', {})
            if 'image/png' in d_:
                img_dir.mkdir(parents=True, exist_ok=True)
                fn = img_dir/f'readme_{n_img}.png'; n_img += 1
                fn.write_bytes(base64.b64decode(''.join(d_['image/png'])))
                out.append(f'![]({img_rel}/{fn.name})')
            elif 'text/markdown' in d_: out.append(fix(''.join(d_['text/markdown'])).strip())
            elif 'text/plain' in d_: out.append('```\n' + ''.join(d_['text/plain']).rstrip() + '\n```')
    return '\n\n'.join(out) + '\n'

def main():
    from nbdev.config import get_config
    cfg = get_config()
    src = (docs.nbs/'index.ipynb').resolve()
    d = docs.run_all([src], n_workers=1)[src]
    (root/'README.md').write_text(render(d, (cfg.doc_host + cfg.doc_baseurl).rstrip('/') + '/'))
    print(f'wrote {root/"README.md"}')

if __name__ == '__main__': main()

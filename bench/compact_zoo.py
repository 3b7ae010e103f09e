"""The compaction zoo: which common networks `compact` shrinks, by how much, and what it says when couplings keep dead channels.

Each network (timm or torchvision, random init, BatchNorm statistics like a trained network's) is pruned to 50 % of the filters of every Conv2d
by magnitude, then compacted; the outputs are checked against the masked model's in eval mode. Prints a markdown table.

Run from the repository root: `python bench/compact_zoo.py` (about a minute on 2 cores). The zoo test (`tests/test_zoo.py`) asserts the same on most of these."""
from __future__ import annotations
import re, sys, time, warnings
from pathlib import Path
import torch, timm
from torch import nn
from torchvision import models as tvm
from fastprune.all import *
from fastprune.compact import compact
sys.path.insert(0, str(Path(__file__).parent))
from overhead import environment  # the header every benchmark prints
from compact import trained_bn, n_params  # bench/compact.py's

warnings.filterwarnings('ignore', category=FutureWarning)

def tm(name, **kw): return lambda: timm.create_model(name, pretrained=False, num_classes=10, **kw)

# name: (factory, input size, what its blocks hold)
zoo = {
    'ResNet-18 (torchvision)': (lambda: tvm.resnet18(num_classes=10), 32, 'residual sums'),
    'ResNet-50 (torchvision)': (lambda: tvm.resnet50(num_classes=10), 32, 'bottlenecks, residual sums'),
    'MobileNetV2 (torchvision)': (lambda: tvm.mobilenet_v2(num_classes=10), 32, 'depthwise, inverted residuals'),
    'MobileNetV3-Small (torchvision)': (lambda: tvm.mobilenet_v3_small(num_classes=10), 32, 'depthwise, squeeze-and-excitation, hardswish'),
    'MnasNet 0.5 (torchvision)': (lambda: tvm.mnasnet0_5(num_classes=10), 32, 'depthwise, residual sums'),
    'EfficientNet-B0 (timm)': (tm('efficientnet_b0'), 32, 'depthwise, squeeze-and-excitation, SiLU'),
    'RegNetY-200MF (timm regnety_002)': (tm('regnety_002'), 32, 'grouped convs, squeeze-and-excitation'),
    'RegNetX-400MF (torchvision)': (lambda: tvm.regnet_x_400mf(num_classes=10), 32, 'grouped convs'),
    'ResNeXt-26 (timm resnext26ts)': (tm('resnext26ts'), 32, 'grouped convs, residual sums'),
    'GhostNet (timm ghostnet_100)': (tm('ghostnet_100'), 32, 'concatenation of a layer and a function of it, slices, squeeze-and-excitation'),
    'MixNet-S (timm)': (tm('mixnet_s'), 32, 'channel splits into mixed kernels'),
    'DenseNet-121 (torchvision)': (lambda: tvm.densenet121(num_classes=10), 32, 'dense concatenations'),
    'SqueezeNet 1.0 (torchvision)': (lambda: tvm.squeezenet1_0(num_classes=10), 64, 'concatenations, conv classifier'),
    'GoogLeNet (torchvision)': (lambda: tvm.googlenet(num_classes=10, aux_logits=False, init_weights=True), 32, 'inception concatenations'),
    'DLA-34 (timm)': (tm('dla34'), 32, 'tree aggregation'),
    'HRNet-W18-small (timm)': (tm('hrnet_w18_small'), 64, 'multi-resolution fusion'),
    'RepVGG-A0 (timm)': (tm('repvgg_a0'), 32, 'parallel branches summed'),
    'ConvNeXt-atto (timm)': (tm('convnext_atto'), 32, 'LayerNorm over channels, layer scale'),
    'InceptionNeXt-atto (timm)': (tm('inception_next_atto'), 32, 'channel splits, MLP'),
    'EfficientViT-B0 (timm)': (tm('efficientvit_b0'), 32, 'linear attention over reshaped channels'),
    'ViT-Tiny/16 (timm, 32 px)': (tm('vit_tiny_patch16_224', img_size=32), 32, 'LayerNorm, residual stream, attention'),
    'ShuffleNetV2 0.5 (torchvision)': (lambda: tvm.shufflenet_v2_x0_5(num_classes=10), 32, 'channel shuffle'),
}

def causes(msg:str)->str:
    "The couplings a compaction warning names, one per line of it"
    return '; '.join(re.sub(r': \d+ groups?, (\d+) dead channels kept.*', r' (\1 dead channels)', l[2:]) for l in msg.splitlines() if l.startswith('- '))

def row(name, factory, size, blocks)->str:
    torch.manual_seed(0)
    m,x,t = trained_bn(factory()).eval(),torch.randn(2, 3, size, size),time.time()
    sp = Sparsifier(m, 'filter').prune(50)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        try: small = compact(m, x, sparsifier=sp)
        except ValueError as e: return f'| {name} | {blocks} | {n_params(m)/1e6:.2f} M | refused | | {str(e).split(":")[0]}: {str(e).split(":")[-1].strip()} | {time.time()-t:.1f} |'
    msg = next((str(o.message) for o in w if issubclass(o.category, UserWarning) and 'compact removes' in str(o.message)), '')
    with torch.no_grad(): err = ((small.eval()(x) - m(x)).abs().max()/m(x).abs().max()).item()
    return f'| {name} | {blocks} | {n_params(m)/1e6:.2f} M → {n_params(small)/1e6:.2f} M | **{n_params(small)/n_params(m):.2f}** | {err:.0e} | {causes(msg) or "none"} | {time.time()-t:.1f} |'

def main():
    print('# The compaction zoo\n')
    environment()
    print('\nEach network is pruned to 50 % of the filters of every `Conv2d` by magnitude (`Sparsifier(model, "filter").prune(50)`), from random weights with '
          'BatchNorm statistics like a trained network\'s, then `compact(model, x)` on a batch of two. *Parameters left* is the compacted over the dense '
          'parameter count; *difference* is the largest output difference, relative to the largest output; *what keeps dead channels* quotes the warning '
          'compaction gives when couplings keep some of them (pruned independently, layers tied by a residual sum rarely lose the same channels).\n')
    print('| network | what its blocks hold | parameters | parameters left | difference | what keeps dead channels (from the warning) | seconds |')
    print('|---|---|---:|---:|---:|---|---:|')
    t0 = time.time()
    for name,(factory,size,blocks) in zoo.items(): print(row(name, factory, size, blocks), flush=True)
    print(f'\nTotal {time.time()-t0:.0f} s.')

if __name__ == '__main__': main()

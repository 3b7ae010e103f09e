"What `from fastprune.all import *` puts in a notebook: a pinned set of user-facing names that collide with nothing a notebook already has"
import subprocess, sys

# A new name here is a decision: it must be something a user writes in a notebook.
EXPORTED = {
    'SparsifyCallback', 'PruneConfig', 'Sparsifier', 'sparsity_report', 'plot_sparsity', 'recalibrate_bn',
    'Granularity', 'register_granularity', 'get_granularity', 'plot_mask',
    'Criterion', 'register_criterion', 'get_criterion',
    'register_schedule', 'get_schedule', 'sched_one_shot', 'sched_agp', 'sched_dsd', 'sched_iterative', 'sched_one_cycle',
    'Iterative', 'OneCycle', 'plot_schedules',
    'create_learner', 'vgg16_learner', 'mobilenet_learner', 'register_arch',
    'get_dls', 'register_dataset', 'DataSource',
    'run_study', 'plan_study', 'read_results', 'summarize', 'plot_study',
    'compact', 'compact_plan', 'CompactCallback', 'save_sparse', 'load_sparse', 'export_onnx', 'compare_models',
    'sensitivity', 'plot_sensitivity', 'allocate', 'DistillCallback',
}
OTHER_PACKAGES = {'datasets', 'transformers', 'timm', 'torch', 'numpy', 'pandas'}

def star(module:str)->dict:
    "The names `from module import *` binds, and what they are"
    ns = {}
    exec(f'from {module} import *', ns)
    ns.pop('__builtins__', None)
    return ns

def test_the_exported_names_are_pinned():
    names = set(star('fastprune.all'))
    assert names == EXPORTED, f'added: {sorted(names - EXPORTED)}, removed: {sorted(EXPORTED - names)}'
    assert len(names) < 50

def test_nothing_a_notebook_has_is_shadowed():
    fastai = star('fastai.vision.all')
    assert not EXPORTED & set(fastai), sorted(EXPORTED & set(fastai))
    assert not EXPORTED & set(sys.stdlib_module_names), sorted(EXPORTED & set(sys.stdlib_module_names))
    assert not EXPORTED & OTHER_PACKAGES
    ns = {}
    exec('from fastai.vision.all import *\nfrom fastprune.all import *', ns)
    assert all(ns[k] is v for k,v in fastai.items()), [k for k,v in fastai.items() if ns[k] is not v]

def test_optional_and_compaction_packages_load_only_when_used():
    code = "import sys, fastprune.all; print(sorted(m for m in ('torch_pruning', 'onnx', 'onnxruntime', 'ray', 'mlxtend') if m in sys.modules))"
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]', out

def test_registries_stay_reachable_in_their_modules():
    from fastprune.granularity import granularities
    from fastprune.criteria import criteria
    from fastprune.schedules import schedules
    from fastprune.data import datasets
    from fastprune.learner import arch_cfgs
    assert {'weight', 'filter'} <= set(granularities) and 'large_final' in criteria and 'one_cycle' in schedules
    assert 'digits' in datasets and 'mobilenet_v2' in arch_cfgs

# What `from fastprune.all import *` puts in a notebook: the names a user writes, nothing else. Hand-written, like fastai's own `all.py`.
# Registries and helpers stay public in their modules (`fastprune.criteria.criteria`, `fastprune.data.datasets`, ...), where tests and
# advanced users import them by name. Importing this module also adds fastprune's methods to fastai's `Learner` (`learn.compact()`, ...).
from .granularity import Granularity, register_granularity, get_granularity, plot_mask
from .criteria import Criterion, register_criterion, get_criterion
from .schedules import (register_schedule, get_schedule, sched_one_shot, sched_agp, sched_dsd, sched_iterative, sched_one_cycle,
                        Iterative, OneCycle, plot_schedules)
from .sparsifier import PruneConfig, Sparsifier
from .report import sparsity_report, plot_sparsity
from .callback import SparsifyCallback, recalibrate_bn
from .learner import create_learner, vgg16_learner, mobilenet_learner, register_arch
from .data import get_dls, register_dataset, DataSource
from .study import run_study, plan_study, read_results, summarize, plot_study
from .compact import compact, compact_plan, CompactCallback
from .export import save_sparse, load_sparse, export_onnx, compare_models
from .sensitivity import sensitivity, plot_sensitivity, allocate
from .distill import DistillCallback

__all__ = ['Granularity', 'register_granularity', 'get_granularity', 'plot_mask',
           'Criterion', 'register_criterion', 'get_criterion',
           'register_schedule', 'get_schedule', 'sched_one_shot', 'sched_agp', 'sched_dsd', 'sched_iterative', 'sched_one_cycle',
           'Iterative', 'OneCycle', 'plot_schedules',
           'PruneConfig', 'Sparsifier', 'sparsity_report', 'plot_sparsity', 'SparsifyCallback', 'recalibrate_bn',
           'create_learner', 'vgg16_learner', 'mobilenet_learner', 'register_arch',
           'get_dls', 'register_dataset', 'DataSource',
           'run_study', 'plan_study', 'read_results', 'summarize', 'plot_study',
           'compact', 'compact_plan', 'CompactCallback', 'save_sparse', 'load_sparse', 'export_onnx', 'compare_models',
           'sensitivity', 'plot_sensitivity', 'allocate', 'DistillCallback']

# The public API: `from fastprune.all import *`. Hand-written, like fastai's own `all.py`.
from .granularity import *
from .criteria import *
from .schedules import *
from .sparsifier import *
from .report import *
from .callback import *
from .learner import *
from .data import *
from .study import *
from .compact import *

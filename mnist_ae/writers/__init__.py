"""Host-side metric writers: JSONL, TensorBoard (tensorboardX) and Weights & Biases.

The training loop talks to one `MetricWriter` (usually from `create_writer`) and never to a
backend directly, so backends can be switched by a flag and the JSONL log always exists
for scripts and tests. In the spirit of `clu.metric_writers`, without TensorFlow or clu;
the pictures they log are drawn by `mnist_ae.render`.

All inputs are converted with `np.asarray` / `float` on the writing thread; pass host or
device arrays, but do not mutate a numpy buffer after handing it to an `AsyncWriter`.
"""

from mnist_ae.writers.base import Embeddings, HParamValue, MetricWriter, flatten_hparams
from mnist_ae.writers.combinators import AsyncWriter, MultiWriter, WriterError, close_all
from mnist_ae.writers.factory import FRAMEWORKS, create_writer
from mnist_ae.writers.jsonl import JsonlWriter
from mnist_ae.writers.tensorboard import TensorBoardWriter
from mnist_ae.writers.wandb import MAX_WANDB_TABLE_IMAGES, WandbWriter

__all__ = [
    "FRAMEWORKS",
    "MAX_WANDB_TABLE_IMAGES",
    "AsyncWriter",
    "Embeddings",
    "HParamValue",
    "JsonlWriter",
    "MetricWriter",
    "MultiWriter",
    "TensorBoardWriter",
    "WandbWriter",
    "WriterError",
    "close_all",
    "create_writer",
    "flatten_hparams",
]

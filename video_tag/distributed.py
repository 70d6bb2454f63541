"""Data parallelism on ``paddle.distributed``: one process per device, rank 0 alone writes.

``python -m paddle.distributed.launch --nproc_per_node N train.py ...`` (or ``--gpus``) starts the
processes; a plain ``python train.py`` with several visible GPUs spawns one per GPU (``spawn``). On CPU
the same code runs with the gloo backend.
"""
import logging
import os

import paddle
import paddle.distributed as dist

from .cpu import use_default_threads


def world_size():
    return dist.get_world_size()


def rank():
    return dist.get_rank()


def is_main():
    return dist.get_rank() == 0


def launched():
    """True inside a process started by ``paddle.distributed.launch`` or ``spawn``."""
    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1


def init(use_gpu):
    """Pick this process's device and join the process group when launched with several processes.
    Returns whether this process runs on a GPU (``use_gpu`` and a CUDA build of Paddle)."""
    gpu = bool(use_gpu) and paddle.is_compiled_with_cuda()
    if use_gpu and not gpu:
        logging.getLogger(__name__).warning("use_gpu is set but this Paddle has no CUDA: running on CPU")
    paddle.set_device("gpu" if gpu else "cpu")
    # `import paddle` keeps its math library on one thread whatever OMP_NUM_THREADS says: use every core
    # this process may run on (its share under a launcher), or what OMP_NUM_THREADS says.
    threads, why = use_default_threads()
    if launched() and not dist.is_initialized():
        dist.init_parallel_env()
    if not is_main():
        logging.getLogger().setLevel(logging.WARNING)  # rank 0 alone logs progress
    logging.getLogger(__name__).info("CPU: %d math thread(s) per process (%s)", threads, why)
    return gpu


def visible_gpus(use_gpu):
    """Number of GPUs this process could use (0 without ``use_gpu`` or a CUDA build)."""
    if not use_gpu or not paddle.is_compiled_with_cuda():
        return 0
    return paddle.device.cuda.device_count()


def will_spawn(use_gpu):
    """True when ``run`` will start one process per visible GPU itself."""
    return visible_gpus(use_gpu) > 1 and not launched()


def run(function, args, use_gpu):
    """Call ``function(*args)``, in one process per visible GPU when there are several."""
    gpus = visible_gpus(use_gpu)
    if will_spawn(use_gpu):
        dist.spawn(function, args=args, nprocs=gpus)
    else:
        function(*args)


def gather(obj):
    """List of ``obj`` from every rank, in rank order, on every rank (picklable objects; what rank 0
    alone needs: ``gather_to_main``)."""
    if world_size() == 1:
        return [obj]
    gathered = []
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_to_main(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` on rank 0, None on the other ranks (picklable objects):
    what rank 0 alone needs (metric states, failure lists) travels to it alone, not to every rank as
    with ``gather``; rank 0 receives one rank's object at a time."""
    if world_size() == 1:
        return [obj]
    if not is_main():
        dist.send_object_list([obj], dst=0)
        return None
    gathered = [obj]
    for source in range(1, world_size()):
        received = [None]
        dist.recv_object_list(received, src=source)
        gathered.append(received[0])
    return gathered


def broadcast_from_main(obj):
    """Rank 0's ``obj`` on every rank (a small picklable object, e.g. a metrics dict)."""
    if world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier():
    if world_size() > 1:
        dist.barrier()

"""Data-parallel training on MPI: THE one place that knows MPI (as backend.py is for cupy).

    mpiexec -n 2 minigan train --preset dcgan-mnist ...     # or a script calling Trainer(...).run()

A launch under ``mpiexec`` with more than one rank is detected from the launcher's environment
(PMI_SIZE for MPICH/Hydra, OMPI_COMM_WORLD_SIZE for Open MPI, ...) before mpi4py is imported;
``import minigan`` and every single-process run never import it.  The K-rank run is the 1-process
run, split: every rank draws the *global* batch's random numbers (cheap next to the compute) and
keeps its slice; gradients are averaged by one Allreduce per network and step over a flat buffer;
BatchNorm's batch statistics and backward sums are all-reduced (``sync``), so running statistics,
parameters and optimizer state are those of one process, on every rank; rank 0 alone writes.
An exception on any rank aborts all of them with that rank's message (MPI Abort), never a hang.
Install with ``pip install "minigan[mpi]"`` (mpi4py and mpich: ``mpiexec`` lands in the venv).
"""
import os
import sys
import time

import numpy as np

from .backend import asnumpy, get_xp

SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")

_world = {"comm": None, "checked": False}


def launched_size():
    """The number of ranks the launcher started (1 when not under mpiexec), from its environment."""
    for var in SIZE_VARIABLES:
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 1


def world():
    """The Comm of this launch, or None for a single process (mpi4py is imported only when the
    launcher started more than one rank)."""
    if not _world["checked"]:
        _world["checked"] = True
        if launched_size() > 1:
            try:
                from mpi4py import MPI
            except ImportError:
                raise ImportError("this process was started by mpiexec with more than one rank, but mpi4py is "
                                  "missing: pip install mpi4py mpich (from a source checkout: pip install '.[mpi]')")
            comm = MPI.COMM_WORLD
            if comm.Get_size() > 1:
                _world["comm"] = Comm(comm, MPI)
    return _world["comm"]


class Comm:
    """The few collective operations data-parallel training needs, on host buffers."""

    def __init__(self, comm, mpi):
        self.comm, self.MPI = comm, mpi
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.seconds, self.bytes = 0.0, 0          # spent in (and moved by) collectives, for benchmarks/scaling.py

    def _allreduce(self, send, recv):
        t0 = time.perf_counter()
        self.comm.Allreduce(send, recv, op=self.MPI.SUM)
        self.seconds += time.perf_counter() - t0
        self.bytes += send.nbytes

    def allreduce(self, a):
        """The element-wise sum over ranks of ``a`` (numpy or cupy; staged through host memory)."""
        host = np.array(asnumpy(a), order="C")          # (a copy that keeps 0-d arrays 0-d)
        out = np.empty_like(host)
        self._allreduce(host, out)
        return get_xp(a).asarray(out) if hasattr(a, "dtype") and get_xp(a) is not np else out

    def use_gpu(self):
        """CuPy backend: this rank computes on device ``rank % device_count``; its gradients are
        all-reduced by NCCL on the compute stream when ``MINIGAN_NCCL=1`` (UNVERIFIED: written without a
        GPU, hence off by default) and each rank has a GPU of its own, else staged through host memory
        with MPI (NCCL refuses two ranks on one GPU), which is said on rank 0's console."""
        from .backend import _load_cupy
        cupy = _load_cupy()
        n_dev = cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(self.rank % n_dev).use()
        local = int(os.environ.get("MPI_LOCALNRANKS", os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", self.size)))
        why = None
        if os.environ.get("MINIGAN_NCCL", "0") != "1":
            why = "MINIGAN_NCCL=1 not set (the NCCL path has not been run on a device yet)"
        elif local > n_dev:
            why = f"{local} ranks share {n_dev} GPU(s) on this node, which NCCL refuses"
        if why is None:
            from cupy.cuda import nccl
            uid = self.comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
            self.nccl = (nccl, nccl.NcclCommunicator(self.size, uid, self.rank))
        elif self.rank == 0:
            print(f"minigan: gradients all-reduced through host memory with MPI: {why}", file=sys.stderr, flush=True)

    nccl = None

    def _average_nccl(self, grads):
        """The flat buffer on the GPU, summed by one NCCL allReduce on the current stream."""
        import cupy
        nccl, comm = self.nccl
        keys = list(grads)
        dtype = grads[keys[0]].dtype
        flat = cupy.concatenate([grads[k].astype(dtype, copy=False).ravel() for k in keys])
        kind = nccl.NCCL_FLOAT64 if dtype == np.float64 else nccl.NCCL_FLOAT32
        t0 = time.perf_counter()
        comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, kind, nccl.NCCL_SUM,
                       cupy.cuda.get_current_stream().ptr)
        self.seconds += time.perf_counter() - t0
        self.bytes += flat.nbytes
        flat /= self.size
        at = 0
        for k in keys:
            g = grads[k]
            g[...] = flat[at:at + g.size].reshape(g.shape)
            at += g.size
        return grads

    def average(self, grads):
        """Replace every gradient by its mean over ranks, in place: ONE Allreduce over a flat buffer
        holding all of them (in the dict's order, the same on every rank)."""
        if not grads:
            return grads
        if self.nccl is not None and all(get_xp(g) is not np for g in grads.values()) and \
                len({g.dtype for g in grads.values()}) == 1:
            return self._average_nccl(grads)
        keys = list(grads)
        flat = np.concatenate([np.asarray(asnumpy(grads[k]), dtype=np.float64).ravel() for k in keys])
        total = np.empty_like(flat)
        self._allreduce(flat, total)
        total /= self.size
        at = 0
        for k in keys:
            g = grads[k]
            part = total[at:at + g.size].reshape(g.shape)
            at += g.size
            grads[k][...] = get_xp(g).asarray(part, dtype=g.dtype) if get_xp(g) is not np else part.astype(g.dtype)
        return grads

    def mean_scalars(self, values):
        """The mean over ranks of a list of floats (one small Allreduce)."""
        return list(self.allreduce(np.asarray(values, dtype=np.float64)) / self.size)

    def broadcast_arrays(self, arrays):
        """Overwrite each array (in place, dict order) with rank 0's copy."""
        for a in arrays.values():
            host = np.ascontiguousarray(asnumpy(a))
            self.comm.Bcast(host, root=0)
            a[...] = get_xp(a).asarray(host) if get_xp(a) is not np else host

    def abort(self, exc):
        """Print this rank's error and stop every rank (never a hang)."""
        print(f"minigan: rank {self.rank} of {self.size} failed: {type(exc).__name__}: {exc}; aborting all ranks",
              file=sys.stderr, flush=True)
        self.comm.Abort(1)


class SliceRNG:
    """Draws what a numpy Generator would draw for the global batch and hands back this rank's
    slice (axis 0): dropout masks of a K-rank run are those of the 1-process run."""

    def __init__(self, rng, rank, size):
        self.rng, self.rank, self.size = rng, rank, size

    def random(self, shape):
        shape = tuple(shape)
        n = shape[0]
        full = self.rng.random((n * self.size,) + shape[1:])
        return full[self.rank * n:(self.rank + 1) * n]


class _Sync:
    """BatchNorm's cross-rank sums (set by ``sync``, read by ops.norm)."""
    comm = None


def sync(comm):
    """Make BatchNorm's train-mode statistics and backward sums global over ``comm`` (None: off)."""
    _Sync.comm = comm


def synced():
    return _Sync.comm


def total(a):
    """The sum over ranks of ``a`` (an array of per-channel sums, or a count), in a's dtype and
    backend: BatchNorm's reduce hook while ``sync`` is on (summed in float64)."""
    xp = get_xp(a) if hasattr(a, "dtype") else np
    host = np.asarray(asnumpy(a) if hasattr(a, "dtype") else a, dtype=np.float64)
    out = _Sync.comm.allreduce(host)
    if not hasattr(a, "dtype"):
        return type(a)(round(float(out))) if isinstance(a, int) else float(out)
    return (xp.asarray(out) if xp is not np else out).astype(a.dtype)

"""Containers: Residual and Sequential (the network that owns the arrays), and the tape."""
from typing import NamedTuple

import numpy as np

from ..backend import BackendError, get_backend, get_xp, is_cupy_array, to_backend
from ..ops import add
from .base import INIT_SCHEMES, Layer, LayerInputError, StateDictError, layer_backward
from .fuse import pair_runner


class Residual(Layer):
    """y = body(x) + shortcut(x); shortcut None is the identity.  Parameters are named
    ``body.<...>`` and ``shortcut.<...>`` (e.g. "3.body.0.weight").   dx = dbody + dshortcut."""

    def __init__(self, body, shortcut=None):
        self.body = body if not isinstance(body, (list, tuple)) else Sequential(*body, _init=False)
        self.shortcut = shortcut if not isinstance(shortcut, (list, tuple)) else Sequential(*shortcut, _init=False)
        for name, part in (("body", self.body), ("shortcut", self.shortcut)):
            if part is not None and not _is_layer(part):
                raise TypeError(f"Residual {name} must be a layer (init/apply/apply_backward), got {part!r}")

    def __repr__(self):
        return f"Residual(body={self.body!r}, shortcut={self.shortcut!r})"

    def init(self, rng, dtype, scheme="torch"):
        pb, sb = self.body.init(rng, dtype, scheme)
        params, state = {"body": pb}, {"body": sb}
        if self.shortcut is not None:
            params["shortcut"], state["shortcut"] = self.shortcut.init(rng, dtype, scheme)
        return params, state

    def apply(self, params, state, x, train, rng):
        try:
            yb, cb = self.body.apply(params["body"], state["body"], x, train, rng)
        except LayerInputError as e:
            raise e.at("body") from None
        if self.shortcut is None:
            ys, cs = x, None
        else:
            try:
                ys, cs = self.shortcut.apply(params["shortcut"], state["shortcut"], x, train, rng)
            except LayerInputError as e:
                raise e.at("shortcut") from None
        if yb.shape != ys.shape:
            raise LayerInputError(self, f"body output {tuple(yb.shape)} and shortcut output {tuple(ys.shape)} differ")
        return yb + ys, (cb, cs)

    def apply_backward(self, params, dy, cache, param_grads):
        cb, cs = cache
        dxb, gb = self.body.apply_backward(params["body"], dy, cb, param_grads)
        grads = {"body": gb} if param_grads else {}
        if self.shortcut is None:
            return dxb + dy, grads
        dxs, gs = self.shortcut.apply_backward(params["shortcut"], dy, cs, param_grads)
        if param_grads:
            grads["shortcut"] = gs
        return dxb + dxs, grads

    def apply_jvp(self, params, params_dot, x_dot, cache):
        """y_dot = body_dot + shortcut_dot (x_dot for the identity)."""
        cb, cs = cache
        try:
            yb, tb = _layer_jvp(self.body, params["body"], params_dot.get("body", {}), x_dot, cb)
        except LayerInputError as e:
            raise e.at("body") from None
        if self.shortcut is None:
            return add(yb, x_dot), (tb, None)
        try:
            ys, ts = _layer_jvp(self.shortcut, params["shortcut"], params_dot.get("shortcut", {}), x_dot, cs)
        except LayerInputError as e:
            raise e.at("shortcut") from None
        return add(yb, ys), (tb, ts)

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, cache, tcache, param_grads=True, input_grad=True):
        """dx_dot = dbody_dot + dshortcut_dot (dy_dot for the identity)."""
        (cb, cs), (tb, ts) = cache, tcache
        dxb, gb = self.body.apply_backward_jvp(params["body"], params_dot.get("body", {}), dy, dy_dot, cb, tb,
                                               param_grads, input_grad)
        grads = {"body": gb} if gb else {}
        if self.shortcut is None:
            return (add(dxb, dy_dot) if input_grad else None), grads
        dxs, gs = self.shortcut.apply_backward_jvp(params["shortcut"], params_dot.get("shortcut", {}), dy, dy_dot,
                                                   cs, ts, param_grads, input_grad)
        if gs:
            grads["shortcut"] = gs
        return (add(dxb, dxs) if input_grad else None), grads


def _layer_jvp(layer, params, params_dot, x_dot, cache):
    """layer.apply_jvp, or a clear error for a layer that has no tangent rules."""
    if not callable(getattr(layer, "apply_jvp", None)) or not callable(getattr(layer, "apply_backward_jvp", None)):
        raise LayerInputError(layer, "has no tangent rules (apply_jvp / apply_backward_jvp), so jvp, "
                                     "backward_jvp and the gradient penalties cannot run through it")
    return layer.apply_jvp(params, params_dot, x_dot, cache)


def walk(layer):
    """The layer and every layer inside it (Sequential layers, Residual body/shortcut, SpectralNorm's layer)."""
    parts = list(getattr(layer, "layers", [])) + [getattr(layer, n, None) for n in ("body", "shortcut", "layer")]
    return [layer] + [m for p in parts if p is not None for m in walk(p)]


def _is_layer(obj):
    return all(callable(getattr(obj, m, None)) for m in ("init", "apply", "apply_backward"))


def flatten_tree(tree, prefix=""):
    """{"0": {"weight": a}} -> {"0.weight": a}"""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flatten_tree(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _merge_trees(params, state):
    """One tree holding params then buffers at every level (torch's state_dict order)."""
    out = {}
    for k in list(params) + [k for k in state if k not in params]:
        p, s = params.get(k), state.get(k)
        if isinstance(p, dict) or isinstance(s, dict):
            out[k] = _merge_trees(p or {}, s or {})
        else:
            out[k] = p if p is not None else s
    return out


class Tape(NamedTuple):
    """What a forward pass leaves for its backward: the layers' caches and the shapes."""
    owner: int
    caches: list
    out_shape: tuple
    in_shape: tuple = ()


class TangentTape(NamedTuple):
    """What ``Sequential.jvp`` leaves for ``backward_jvp``: the tangent caches, the parameter
    tangents (nested like the parameters) and the primal tape's cache list it belongs to."""
    primal: list
    tcaches: list
    params_dot: dict


_FREED = object()   # a cache entry released by backward(free_tape=True)
_FUSED = object()    # the cache slot of a fused pair's second layer


class _Fused(NamedTuple):
    """The cache slot of a fused pair's first layer: its runner (minigan.nn.fuse) and the runner's cache."""
    runner: object
    cache: object


def _pair(tree, i, default=None):
    """The entries of layers i and i + 1 (params, or params_dot with ``default`` for a missing one)."""
    if default is None:
        return tree[str(i)], tree[str(i + 1)]
    return tree.get(str(i), default), tree.get(str(i + 1), default)


def _put(grads, i, pair):
    """Store a fused pair's gradients (g_i, g_i+1) under their layers' keys, leaving out empty ones."""
    for j, g in enumerate(pair):
        if g:
            grads[str(i + j)] = g


def _first_with_params(params, caches, n):
    """The first layer with parameters (n if none); for the second layer of a fused pair, the pair's first."""
    first = next((i for i in range(n) if flatten_tree(params[str(i)])), n)
    return first - 1 if first < n and caches[first] is _FUSED else first


class Sequential(Layer):
    """A chain of layers that owns their arrays.

    net = Sequential(Linear(2, 8), ReLU(), Linear(8, 1), dtype=np.float64, seed=0)
    y, tape = net.forward(x, train=True)
    dx, grads = net.backward(dy, tape)              # grads keyed like net.parameters()
    The arrays live on the backend current at construction; ``net.to("cupy")`` moves them.
    ``init="dcgan"`` draws conv/linear weights from N(0, 0.02) and BN scales from N(1, 0.02).
    A tape references (does not copy) layer inputs and outputs its backward needs: do not modify
    them in place before the backward, and drop the tape after it to free that memory.
    """
    skips_input_grad = True

    def __init__(self, *layers, dtype=np.float32, seed=None, init="torch", _init=True):
        for i, layer in enumerate(layers):
            if not _is_layer(layer):
                raise TypeError(f"Sequential: argument {i} is not a layer (needs init/apply/apply_backward): {layer!r}")
        if init not in INIT_SCHEMES:
            raise ValueError(f"Sequential: init must be one of {INIT_SCHEMES}, got {init!r}")
        self.layers = list(layers)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"Sequential: dtype must be float32 or float64, got {self.dtype}")
        self.rng = np.random.default_rng(seed)
        self.params, self.state, self._flat = {}, {}, {}
        self.backend = get_backend()
        if _init:
            params, state = self.init(self.rng, self.dtype, init)
            self._set_arrays(to_backend(params, self.backend), to_backend(state, self.backend))

    # ---- the layer protocol (so that Sequentials nest) ----
    def init(self, rng, dtype, scheme="torch"):
        params, state = {}, {}
        for i, layer in enumerate(self.layers):
            params[str(i)], state[str(i)] = layer.init(rng, dtype, scheme)
        return params, state

    def apply(self, params, state, x, train, rng):
        """Layers first to last.  A pair that has a fused twin (minigan.nn.fuse) runs as one op:
        its cache goes in the first layer's slot, ``_FUSED`` in the second's.  Bad input to a pair
        reruns it unfused, so the error names the layer the reference path names."""
        caches, i, n = [], 0, len(self.layers)
        while i < n:
            runner = pair_runner(self.layers[i], self.layers[i + 1], x) if i + 1 < n else None
            if runner is not None:
                try:
                    x, cache = runner.apply(_pair(params, i), x, train, rng)
                    caches += [_Fused(runner, cache), _FUSED]
                    i += 2
                    continue
                except LayerInputError:
                    pass
            try:
                x, cache = self.layers[i].apply(params[str(i)], state[str(i)], x, train, rng)
            except LayerInputError as e:
                raise e.at(i) from None
            caches.append(cache)
            i += 1
        return x, caches

    def apply_backward(self, params, dy, caches, param_grads, input_grad=True, free_caches=False):
        """Layers from last to first.  ``input_grad=False``: the layers before the first one with
        parameters are not run at all, and that one is asked to skip its input gradient when it
        can (a layer with ``skips_input_grad``; any other layer computes it and it is dropped);
        dx is then None.  ``free_caches``: each entry of ``caches`` is released as soon as its
        layer's backward has run (the list is changed in place)."""
        grads, first = {}, 0
        if not input_grad:
            first = _first_with_params(params, caches, len(self.layers))
            if not param_grads:
                first = len(self.layers)
        for i in range(len(self.layers) - 1, first - 1, -1):
            if caches[i] is _FUSED:
                continue
            if isinstance(caches[i], _Fused):
                dy, g = caches[i].runner.apply_backward(_pair(params, i), dy, caches[i].cache, param_grads,
                                                        i > first or input_grad)
                _put(grads, i, g)
                if free_caches:
                    caches[i] = caches[i + 1] = _FREED
                continue
            dy, g = layer_backward(self.layers[i], params[str(i)], dy, caches[i], param_grads,
                                   i > first or input_grad)
            if free_caches:
                caches[i] = _FREED
            if g:
                grads[str(i)] = g
        if free_caches:
            caches[:] = [_FREED] * len(caches)
        return (dy if input_grad else None), grads

    def apply_jvp(self, params, params_dot, x_dot, caches):
        """The layers' tangents, first to last: -> (y_dot, tangent caches).  None tangents are zero."""
        tcaches = []
        for i, layer in enumerate(self.layers):
            if caches[i] is _FUSED:
                tcaches.append(None)
                continue
            if isinstance(caches[i], _Fused):
                x_dot, tcache = caches[i].runner.apply_jvp(_pair(params, i), _pair(params_dot, i, {}), x_dot,
                                                           caches[i].cache)
                tcaches.append(tcache)
                continue
            try:
                x_dot, tcache = _layer_jvp(layer, params[str(i)], params_dot.get(str(i), {}), x_dot, caches[i])
            except LayerInputError as e:
                raise e.at(i) from None
            tcaches.append(tcache)
        return x_dot, tcaches

    def apply_backward_jvp(self, params, params_dot, dy, dy_dot, caches, tcaches, param_grads=True, input_grad=True):
        """The backward's tangent, last layer to first.  Each layer needs its own upstream gradient
        dy, so the primal backward (dx only: no weight-gradient work) runs alongside, one layer
        behind.  ``input_grad=False`` stops at the first layer with parameters, as apply_backward."""
        grads, first = {}, 0
        if not input_grad:
            first = _first_with_params(params, caches, len(self.layers))
        for i in range(len(self.layers) - 1, first - 1, -1):
            if caches[i] is _FUSED:
                continue
            if isinstance(caches[i], _Fused):
                run, pair, c = caches[i].runner, _pair(params, i), caches[i].cache
                dx_dot, g = run.apply_backward_jvp(pair, _pair(params_dot, i, {}), dy, dy_dot, c, tcaches[i],
                                                   param_grads, i > first or input_grad)
                if i > first:
                    dy, _ = run.apply_backward(pair, dy, c, False)
                dy_dot = dx_dot
                _put(grads, i, g)
                continue
            layer, p = self.layers[i], params[str(i)]
            dx_dot, g = layer.apply_backward_jvp(p, params_dot.get(str(i), {}), dy, dy_dot, caches[i], tcaches[i],
                                                 param_grads, i > first or input_grad)
            if i > first:
                dy, _ = layer.apply_backward(p, dy, caches[i], False)
            dy_dot = dx_dot
            if g:
                grads[str(i)] = g
        return (dy_dot if input_grad else None), grads

    # ---- composition (as torch.nn.Sequential) ----
    def __len__(self):
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index):
        """``net[i]``: the i-th layer.  ``net[a:b]``: a Sequential of those layers that shares this
        net's arrays (a change to one is a change to the other) under this net's parameter names when
        the slice starts at 0, so ``D[:k]`` is D's first k layers, e.g. for feature matching."""
        if not isinstance(index, slice):
            return self.layers[index]
        idx = range(len(self.layers))[index]
        if idx.step != 1:
            raise ValueError(f"Sequential: slices must be contiguous (step 1), got {index}")
        part = Sequential(*[self.layers[i] for i in idx], dtype=self.dtype, _init=False)
        part.rng, part.backend = self.rng, self.backend
        part._set_arrays({str(j): self.params[str(i)] for j, i in enumerate(idx)},
                         {str(j): self.state[str(i)] for j, i in enumerate(idx)})
        return part

    def astype(self, dtype):
        """A copy of this net computing in ``dtype`` (float32 or float64), parameters and state cast."""
        other = Sequential(*self.layers, dtype=dtype, _init=False)
        other.backend = self.backend
        cast = (lambda tree: {k: cast(v) if isinstance(v, dict) else
                              (v.copy() if v.dtype.kind not in "fc" else v.astype(other.dtype)) for k, v in tree.items()})
        other._set_arrays(cast(self.params), cast(self.state))
        other.rng = np.random.default_rng()
        other.rng.bit_generator.state = self.rng.bit_generator.state
        return other

    def __repr__(self):
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({body}\n)"

    # ---- the network API ----
    def _set_arrays(self, params, state):
        self.params, self.state = params, state
        self._flat = flatten_tree(params)

    def parameters(self):
        """{name: array}: the live trainable arrays that optimizers update in place."""
        return dict(self._flat)

    def buffers(self):
        """{name: array}: the live non-trainable state (BatchNorm running statistics)."""
        return flatten_tree(self.state)

    def num_parameters(self):
        return int(sum(p.size for p in self._flat.values()))

    def forward(self, x, train=True, rng=None):
        """-> (y, tape).  ``train`` picks batch statistics and active dropout; ``rng`` (a numpy
        Generator) overrides the net's own for dropout masks."""
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"Sequential.forward: expected an array, got {type(x).__name__}")
        indices = bool(self.layers) and getattr(self.layers[0], "takes_indices", False)
        if x.dtype != self.dtype and not (indices and x.dtype.kind in "iu"):
            raise LayerInputError(self._short(), f"expected input of dtype {self.dtype}"
                                                 f"{' (or integer indices)' if indices else ''}, got {x.dtype} "
                                                 f"(shape {tuple(x.shape)})")
        if is_cupy_array(x) != (self.backend == "cupy"):
            get_xp(x, *self._flat.values())   # raises the mixed-backend error when params exist
            raise LayerInputError(self._short(), f"the input lives on {'cupy' if is_cupy_array(x) else 'numpy'} "
                                                 f"but the network on {self.backend}; call net.to(...) or move the input")
        y, caches = self.apply(self.params, self.state, x, train, self.rng if rng is None else rng)
        return y, Tape(id(self), caches, tuple(y.shape), tuple(x.shape))

    def __call__(self, x, train=False):
        """The output alone (eval mode by default): y = net(x)."""
        return self.forward(x, train=train)[0]

    def backward(self, dy, tape, param_grads=True, grads=None, input_grad=True, free_tape=False):
        """-> (dx, grads).  ``param_grads=False`` computes dx only (no weight-gradient work);
        ``input_grad=False`` computes the parameter gradients only and returns dx None (no work for
        the gradient of the input, e.g. of real images or of z; as torch for a tensor without
        requires_grad); ``grads`` (a dict from an earlier backward) is accumulated into in place
        and returned.  ``free_tape=True`` releases each layer's cache as soon as its backward has
        run, which lowers the peak memory (as torch frees its graph during backward unless
        retain_graph); the tape cannot be used again."""
        self._check_tape("backward", tape)
        self._check_array("backward", "dy", dy, tape.out_shape, "the forward output")
        if not (param_grads or input_grad):
            raise ValueError("Sequential.backward: param_grads=False and input_grad=False leave nothing to compute")
        dx, nested = self.apply_backward(self.params, dy, tape.caches, param_grads, input_grad, free_tape)
        flat = flatten_tree(nested)
        stray = [k for k in flat if k not in self._flat]
        if stray:
            raise ValueError(f"Sequential.backward: a layer returned gradients for {stray}, which are not parameters "
                             f"of this network (a misspelt key would leave a parameter untrained); expected "
                             f"keys among {list(self._flat)}")
        new = {k: flat[k] for k in self._flat if k in flat}      # in parameter order
        if grads is None:
            return dx, new
        for k, g in new.items():
            if k in grads:
                grads[k] += g
            else:
                grads[k] = g
        return dx, grads

    def jvp(self, tape, x_dot=None, params_dot=None):
        """-> (y_dot, ttape): the tangent of the forward that made ``tape``, along the input tangent
        ``x_dot`` (the input's shape) and the parameter tangents ``params_dot`` ({name: array} keyed
        like ``parameters()``); None, or a missing key, is a zero tangent.  Pearlmutter's R-operator:
        y_dot = d/dt y(x + t x_dot, params + t params_dot) at t = 0, layer by layer with each
        op's *_jvp (the formulas sit beside each op in minigan.ops).  In train mode the batch
        statistics move with x (their tangent is included); dropout keeps the tape's mask.
        ``ttape`` feeds ``backward_jvp``."""
        self._check_tape("jvp", tape)
        if x_dot is not None:
            self._check_array("jvp", "x_dot", x_dot, tape.in_shape, "the forward input")
        nested = self._nest_tangents(params_dot)
        y_dot, tcaches = self.apply_jvp(self.params, nested, x_dot, tape.caches)
        if y_dot is None:
            y_dot = get_xp(*self._flat.values()).zeros(tape.out_shape, dtype=self.dtype)
        return y_dot, TangentTape(tape.caches, tcaches, nested)

    def backward_jvp(self, dy, tape, ttape, dy_dot=None, param_grads=True, input_grad=True):
        """-> (dx_dot, grads_dot): the tangent of ``backward(dy, tape)`` along the tangents given
        to ``jvp`` (which made ``ttape`` from ``tape``) and ``dy_dot`` (None: zero), i.e. the
        Hessian-vector products  dx_dot = H_xx x_dot + H_xp p_dot + J^T dy_dot  and
        grads_dot = H_px x_dot + H_pp p_dot + (dgrads/ddy) dy_dot  of the scalar <dy, y>.
        ``grads_dot`` is keyed like ``parameters()`` (zeros where the tangent vanishes).
        ``param_grads=False`` / ``input_grad=False`` skip grads_dot / dx_dot (returned {} / None)."""
        self._check_tape("backward_jvp", tape)
        if not isinstance(ttape, TangentTape) or ttape.primal is not tape.caches:
            raise ValueError("Sequential.backward_jvp: ttape was not made by jvp from this tape "
                             "(run net.jvp(tape, ...) on the same tape first)")
        self._check_array("backward_jvp", "dy", dy, tape.out_shape, "the forward output")
        if dy_dot is not None:
            self._check_array("backward_jvp", "dy_dot", dy_dot, tape.out_shape, "the forward output")
        if not (param_grads or input_grad):
            raise ValueError("Sequential.backward_jvp: param_grads=False and input_grad=False leave nothing to compute")
        dx_dot, nested = self.apply_backward_jvp(self.params, ttape.params_dot, dy, dy_dot, tape.caches,
                                                 ttape.tcaches, param_grads, input_grad)
        xp = get_xp(dy)
        if input_grad and dx_dot is None:
            dx_dot = xp.zeros(tape.in_shape, dtype=self.dtype)
        if not param_grads:
            return dx_dot, {}
        flat = flatten_tree(nested)
        return dx_dot, {k: flat[k] if k in flat else xp.zeros_like(p) for k, p in self._flat.items()}

    def _nest_tangents(self, params_dot):
        """{name: array or None} -> a tree like ``self.params`` (zero tangents left out), validated."""
        if params_dot is None:
            return {}
        if not isinstance(params_dot, dict):
            raise TypeError(f"Sequential.jvp: params_dot must be a dict keyed like parameters(), "
                            f"got {type(params_dot).__name__}")
        unknown = [k for k in params_dot if k not in self._flat]
        if unknown:
            raise KeyError(f"Sequential.jvp: params_dot has keys {unknown} that are not parameters of this "
                           f"network; expected some of {list(self._flat)}")
        nested = {}
        for name, a in params_dot.items():
            if a is None:
                continue
            self._check_array("jvp", f"params_dot[{name!r}]", a, self._flat[name].shape, f"parameter {name!r}")
            *path, leaf = name.split(".")
            node = nested
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = a
        return nested

    def _check_tape(self, where, tape):
        if not isinstance(tape, Tape) or tape.owner != id(self):
            raise ValueError(f"Sequential.{where}: the tape was not made by this network's forward")
        if any(c is _FREED for c in tape.caches):
            raise ValueError(f"Sequential.{where}: this tape was freed by an earlier backward(free_tape=True); "
                             "run the forward again, or keep the tape with free_tape=False")

    def _check_array(self, where, name, a, shape, what):
        """``a`` must be an array of ``shape``, the net's dtype and backend."""
        if not hasattr(a, "shape") or not hasattr(a, "dtype"):
            raise TypeError(f"Sequential.{where}: {name} must be an array, got {type(a).__name__}")
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"Sequential.{where}: {name} has shape {tuple(a.shape)}, but {what} "
                             f"had shape {tuple(shape)}")
        if a.dtype != self.dtype:
            raise TypeError(f"Sequential.{where}: {name} has dtype {a.dtype}, but the network computes in "
                            f"{self.dtype}; gradients would silently change precision")
        if is_cupy_array(a) != (self.backend == "cupy"):
            raise BackendError(f"Sequential.{where}: {name} lives on {'cupy' if is_cupy_array(a) else 'numpy'} "
                               f"but the network on {self.backend}; move it with minigan.to_backend")

    def _short(self):
        return _Named(f"Sequential({len(self.layers)} layers, {self.dtype}, {self.backend})")

    def state_dict(self):
        """{name: copy}: parameters and buffers, in torch's names, order and layouts."""
        return {k: v.copy() for k, v in flatten_tree(_merge_trees(self.params, self.state)).items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays in (cast to the net's dtype, moved to its backend); validates everything
        before writing anything.  Missing ``num_batches_tracked`` is tolerated, as in torch.
        strict=False loads the matching keys and returns (missing, unexpected)."""
        live = flatten_tree(_merge_trees(self.params, self.state))
        src = {k: _to_array(v) for k, v in dict(state_dict).items()}
        missing = [k for k in live if k not in src and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in src if k not in live]
        wrong = [f"{k}: expected shape {tuple(live[k].shape)}, got {tuple(src[k].shape)}"
                 for k in live if k in src and tuple(src[k].shape) != tuple(live[k].shape)]
        problems = ([f"missing keys {missing}"] if missing and strict else []) + \
                   ([f"unexpected keys {unexpected}"] if unexpected and strict else []) + wrong
        if problems:
            raise StateDictError("load_state_dict: " + "; ".join(problems))
        for k, v in src.items():
            if k in live:
                live[k][...] = to_backend(v, self.backend).astype(live[k].dtype, copy=False)
        return missing, unexpected

    def to(self, backend):
        """Move parameters and state to ``"numpy"`` or ``"cupy"`` (in place); returns self."""
        params, state = to_backend(self.params, backend), to_backend(self.state, backend)
        self._set_arrays(params, state)
        self.backend = backend
        return self


class _Named:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _to_array(v):
    """numpy/cupy arrays pass through; torch tensors (duck-typed, no import) become numpy."""
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        return v.detach().cpu().numpy()
    return v if hasattr(v, "dtype") and hasattr(v, "shape") else np.asarray(v)

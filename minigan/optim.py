"""Optimizers, regularisers, clipping and LR schedules.  Update rules follow torch.optim exactly.

``opt.step(params, grads)`` updates the arrays of ``params`` (a name -> array dict, usually
``net.parameters()``) in place; ``grads`` has the same keys (a missing key skips that parameter,
as a ``None`` grad does in torch).  Optimizers never compute gradients.
"""
import itertools
import math

import numpy as np

from .backend import get_xp, to_backend
from .ops import _cupy, _numba


class Optimizer:
    """Base class: per-parameter state keyed by parameter name, and the ``lr`` schedules change."""

    hyper_names = ("lr", "weight_decay")

    def __init__(self, lr, weight_decay=0.0):
        self._bound = None                # {name: id(array)} of the parameter set first stepped
        if not lr >= 0:
            raise ValueError(f"{type(self).__name__}: lr must be >= 0, got {lr!r}")
        if not weight_decay >= 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.state = {}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.hyper_names)})"

    def step(self, params, grads):
        """Update every parameter that has a gradient, in place."""
        unknown = [k for k in grads if k not in params]
        if unknown:
            raise KeyError(f"{type(self).__name__}.step: gradients for unknown parameters {unknown}")
        self._bind(params)
        items = []
        for name, p in params.items():
            g = grads.get(name)
            if g is None:
                continue
            if g.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient of {name!r} has shape {tuple(g.shape)}, "
                                 f"parameter has {tuple(p.shape)}")
            items.append((name, p, g, self.state.setdefault(name, {})))
        self._update_all(items)

    def _bind(self, params):
        """An optimizer keeps its state by parameter name: stepping a second set of arrays (another
        net with the same names) would mix their moments.  The first set stepped binds it."""
        ids = {k: id(p) for k, p in params.items()}
        if self._bound is None:
            self._bound = ids
        other = [k for k in ids if k in self._bound and ids[k] != self._bound[k]]
        if other or set(ids) - set(self._bound):
            raise ValueError(f"{type(self).__name__}.step: these parameters are not the arrays this optimizer "
                             f"has been stepping ({(other or sorted(set(ids) - set(self._bound)))[:4]}...): one "
                             f"optimizer per network (its state is kept by parameter name)")
        for k, p in params.items():
            st = self.state.get(k)
            for v in (st or {}).values():
                if hasattr(v, "shape") and v.shape != p.shape:
                    raise ValueError(f"{type(self).__name__}.step: parameter {k!r} has shape {tuple(p.shape)} but "
                                     f"the optimizer state holds {tuple(v.shape)}")

    def _update_all(self, items):
        """[(name, p, g, state), ...] of one step, all checked; a subclass may update them together."""
        for name, p, g, st in items:
            self._update(name, p, g, st)

    def _update(self, name, p, g, st):
        raise NotImplementedError

    def state_dict(self):
        """{"hyperparams": {...}, "state": {param name: {key: array}}} (copies; ints become 0-d arrays)."""
        hyper = {k: getattr(self, k) for k in self.hyper_names}
        state = {n: {k: (v.copy() if hasattr(v, "copy") else np.asarray(v)) for k, v in st.items()}
                 for n, st in self.state.items()}
        return {"hyperparams": hyper, "state": state}

    def load_state_dict(self, state_dict):
        hyper = state_dict["hyperparams"]
        unknown = set(hyper) - set(self.hyper_names)
        if unknown:
            raise KeyError(f"{type(self).__name__}.load_state_dict: unknown hyperparameters {sorted(unknown)}")
        for k, v in hyper.items():
            setattr(self, k, tuple(float(b) for b in v) if isinstance(v, (list, tuple, np.ndarray)) and k == "betas"
                    else type(getattr(self, k))(v))
        self.state = {n: {k: (int(v) if k == "step" else v.copy()) for k, v in st.items()}
                      for n, st in state_dict.get("state", {}).items()}   # (an optimizer that never stepped)
        self._bound = None                # the next step binds the arrays it is given

    def to(self, backend):
        """Move the state arrays to another backend (after net.to(...))."""
        self.state = {n: {k: (v if k == "step" else to_backend(v, backend)) for k, v in st.items()}
                      for n, st in self.state.items()}
        self._bound = None                # the net moved too: its new arrays bind at the next step
        return self


class SGD(Optimizer):
    """g <- g + wd p;   momentum: b <- mu b + (1 - dampening) g  (b = g at the first step),
    g <- g + mu b (nesterov) or b;   p <- p - lr g.      Reference: torch.optim.SGD."""

    hyper_names = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        if not momentum >= 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)

    def _update(self, name, p, g, st):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if self.momentum:
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


def _lerp_(a, b, w, tmp):
    """a <- a + w (b - a), in place, evaluated with torch's two branches (w < 0.5 or not);
    ``tmp`` is scratch of a's shape."""
    xp = get_xp(a)
    xp.subtract(b, a, out=tmp)
    if abs(w) < 0.5:
        tmp *= w
        a += tmp
    else:
        tmp *= 1 - w
        xp.subtract(b, tmp, out=a)


class Adam(Optimizer):
    """t <- t + 1;  g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    vmax <- max(vmax, v) (amsgrad);  p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    Reference: Kingma & Ba (2015); torch.optim.Adam (single-tensor path)."""

    hyper_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(lr, weight_decay)
        betas = tuple(float(b) for b in betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: betas must be two numbers in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"{type(self).__name__}: eps must be >= 0, got {eps!r}")
        self.betas, self.eps, self.amsgrad = betas, float(eps), bool(amsgrad)
        self._flat = None                 # _update_flat's buffers (numpy without numba)

    def _update(self, name, p, g, st):
        self._decay(p)
        self._adam(p, g, st, self._l2())

    def _l2(self):
        """The L2 coefficient added to the gradient (Adam's weight_decay; AdamW decays p instead)."""
        return self.weight_decay

    def _decay(self, p):
        """Decoupled weight decay applied to p before the step (AdamW); none for Adam."""

    def _update_all(self, items):
        """All tensors of the step together where they share one dtype and one step count (no amsgrad):
        on the GPU in one fused launch (ops/_cupy.adam_all, C-contiguous tensors); else, on numpy without
        numba, each pass once over the moments of every tensor kept in one flat buffer (``_update_flat``);
        else one tensor at a time.  The same float operations, element by element, every way."""
        if self.amsgrad or len(items) < 2 or len({st.get("step", 0) for *_, st in items}) != 1 \
                or len({p.dtype for _, p, _, _ in items}) != 1:
            return super()._update_all(items)
        flat = not _numba.enabled() and all(type(p) is np.ndarray and g.dtype == p.dtype
                                            for _, p, g, _ in items)
        if not (flat or _cupy.enabled()):
            return super()._update_all(items)
        for name, p, g, st in items:
            self._decay(p)
        begun = [(p,) + self._adam_begin(p, g, st, self._l2()) for name, p, g, st in items]
        t = begun[0][-1]
        b1, b2 = self.betas
        step_size, bc2_sqrt = self._bias_corrections(t)
        if _cupy.adam_all([b[:4] for b in begun], 1 - b1, b2, bc2_sqrt, self.eps, step_size):
            return
        if flat:
            return self._update_flat(items, [b[1] for b in begun], step_size, bc2_sqrt)
        for p, g, m, v, t in begun:
            self._adam_passes(p, g, m, v, t)

    def _update_flat(self, items, grads, step_size, bc2_sqrt):
        """One Adam step of many small numpy tensors at once: numpy's per-call cost, not the arithmetic,
        is most of a pass over a 128 x 128 tensor, and each pass then runs once instead of once a tensor.
        The moments live in two flat buffers; each tensor's ``exp_avg`` / ``exp_avg_sq`` is a view of
        its slice (a state loaded, moved or created since is copied in first, values unchanged)."""
        names = tuple(name for name, *_ in items)
        buf = self._flat
        if buf is None or buf["names"] != names or any(
                st["exp_avg"] is not m or st["exp_avg_sq"] is not v
                for (*_, st), m, v in zip(items, buf["exp_avg"], buf["exp_avg_sq"])):
            buf = self._flat = self._flat_buffers(items, names)
        np.concatenate([g.reshape(-1) for g in grads], out=buf["g"])
        step = self._adam_step(buf["g"], buf["m"], buf["v"], buf["tmp"], step_size, bc2_sqrt)
        for (_, p, _, _), a, b in zip(items, buf["bounds"][:-1], buf["bounds"][1:]):
            p -= step[a:b].reshape(p.shape)

    def _flat_buffers(self, items, names):
        """Flat m, v, gradient and scratch for ``items``; each tensor's moments copied in, then replaced
        in its state by the view of its slice."""
        bounds = [0, *itertools.accumulate(p.size for _, p, _, _ in items)]
        dtype = items[0][1].dtype
        buf = {"names": names, "bounds": bounds,
               **{k: np.empty(bounds[-1], dtype) for k in ("m", "v", "g", "tmp")}}
        for key, flat in (("exp_avg", buf["m"]), ("exp_avg_sq", buf["v"])):
            views = []
            for (_, p, _, st), a, b in zip(items, bounds[:-1], bounds[1:]):
                view = flat[a:b].reshape(p.shape)
                view[...] = st[key]
                st[key] = view
                views.append(view)
            buf[key] = views
        return buf

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._flat = None                 # (its views are no longer the state: the next step copies it in)

    def to(self, backend):
        self._flat = None
        return super().to(backend)

    def _adam(self, p, g, st, l2):
        self._adam_passes(p, *self._adam_begin(p, g, st, l2), vmax=st.get("max_exp_avg_sq"))

    def _adam_begin(self, p, g, st, l2):
        """State created on the first step, t <- t + 1, g <- g + l2 p -> (g, m, v, t)."""
        if not st:
            xp = get_xp(p)
            st.update(step=0, exp_avg=xp.zeros_like(p), exp_avg_sq=xp.zeros_like(p))
            if self.amsgrad:
                st["max_exp_avg_sq"] = xp.zeros_like(p)
        st["step"] += 1
        if l2:
            g = g + l2 * p
        return g, st["exp_avg"], st["exp_avg_sq"], st["step"]

    def _bias_corrections(self, t):
        """-> (lr / (1 - b1^t), sqrt(1 - b2^t)): the step size and the divisor of sqrt(v) at step t."""
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1 ** t)
        bc2_sqrt = (1 - b2 ** t) ** 0.5
        return step_size, bc2_sqrt

    def _adam_passes(self, p, g, m, v, t, vmax=None):
        """The step of one tensor from its moments at step t (vmax: amsgrad's running maximum)."""
        b1, b2 = self.betas
        step_size, bc2_sqrt = self._bias_corrections(t)
        if not self.amsgrad and (_numba.adam(p, g, m, v, 1 - b1, b2, bc2_sqrt, self.eps, step_size)
                                 or _cupy.adam(p, g, m, v, 1 - b1, b2, bc2_sqrt, self.eps, step_size)):
            return                      # a fused twin (ops/_numba.py, ops/_cupy.py) did _adam_step's passes in one
        p -= self._adam_step(g, m, v, get_xp(p).empty_like(p), step_size, bc2_sqrt, vmax)

    def _adam_step(self, g, m, v, tmp, step_size, bc2_sqrt, vmax=None):
        """m and v moved one step on in place; -> tmp holding step_size * m / (sqrt(v) / bc2_sqrt + eps), the
        amount p goes down by (``_bias_corrections``: step_size = lr / (1 - b1^t), bc2_sqrt = sqrt(1 - b2^t)).
        ``tmp`` is scratch of g's shape: every pass writes in place."""
        b1, b2 = self.betas
        xp = get_xp(g)
        _lerp_(m, g, 1 - b1, tmp)
        v *= b2
        xp.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp
        if self.amsgrad:
            xp.maximum(vmax, v, out=vmax)
            v = vmax
        denom = xp.sqrt(v, out=tmp)     # denom = sqrt(v) / sqrt(1 - b2^t) + eps
        denom /= bc2_sqrt
        denom += self.eps
        xp.divide(m, denom, out=tmp)
        tmp *= step_size
        return tmp


class AdamW(Adam):
    """Adam with decoupled weight decay: p <- p (1 - lr wd) before the Adam step (no wd in g).
    Reference: Loshchilov & Hutter (2019); torch.optim.AdamW."""

    hyper_names = ("lr", "betas", "eps", "weight_decay", "amsgrad")

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)

    def _l2(self):
        return 0.0

    def _decay(self, p):
        p *= 1 - self.lr * self.weight_decay


# ---------------------------------------------------------------- regularisers and clipping

def _add_into(grads, name, g):
    if name in grads:
        grads[name] += g
    else:
        grads[name] = g


def l1_regularization(params, strength, grads=None):
    """loss = λ Σ |p|;   dloss/dp = λ sign(p) (0 at 0).   Adds into ``grads`` (in place) when given.
    -> (loss as float, grads)."""
    grads = {} if grads is None else grads
    loss = 0.0
    for name, p in params.items():
        loss += float(get_xp(p).abs(p).sum())
        _add_into(grads, name, strength * get_xp(p).sign(p))
    return strength * loss, grads


def l2_regularization(params, strength, grads=None):
    """loss = λ/2 Σ p^2;   dloss/dp = λ p.   (Equivalent to SGD/Adam ``weight_decay``.)"""
    grads = {} if grads is None else grads
    loss = 0.0
    for name, p in params.items():
        loss += float((p * p).sum())
        _add_into(grads, name, strength * p)
    return 0.5 * strength * loss, grads


def global_norm(arrays, norm_type=2.0):
    """The norm of all arrays together: (Σ_i ||a_i||_q^q)^(1/q), or max |a| for q = inf."""
    arrays = list(arrays)
    if not arrays:
        return 0.0
    xp = get_xp(*arrays)
    if norm_type == math.inf:
        return float(max(float(xp.abs(a).max()) for a in arrays))
    norms = xp.stack([xp.linalg.norm(a.ravel(), ord=norm_type) for a in arrays])
    return float(xp.linalg.norm(norms, ord=norm_type))


def clip_grad_norm(grads, max_norm, norm_type=2.0):
    """Scale all gradients by min(1, max_norm / (total_norm + 1e-6)) in place (torch's rule);
    returns the total norm before clipping.   Reference: torch.nn.utils.clip_grad_norm_."""
    total = global_norm(grads.values(), norm_type)
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads.values():
        g *= coef
    return total


def clip_grad_value(arrays, clip_value):
    """Clamp every array into [-clip_value, clip_value] in place.  On gradients this is
    torch.nn.utils.clip_grad_value_; on parameters it is WGAN's weight clipping."""
    if not clip_value >= 0:
        raise ValueError(f"clip_grad_value: clip_value must be >= 0, got {clip_value!r}")
    for a in arrays.values():
        get_xp(a).clip(a, -clip_value, clip_value, out=a)
    return arrays


# ---------------------------------------------------------------- LR schedules

class LRSchedule:
    """Sets ``optimizer.lr`` from the step count; construction sets the initial lr (epoch 0).
    Call ``step()`` once per optimizer step (or per epoch, as you define it)."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t):
        raise NotImplementedError

    def step(self):
        self.last_epoch += 1
        self.optimizer.lr = self.lr_at(self.last_epoch)
        return self.optimizer.lr

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, sd):
        self.base_lr, self.last_epoch = float(sd["base_lr"]), int(sd["last_epoch"])
        self.optimizer.lr = self.lr_at(self.last_epoch)


class StepLR(LRSchedule):
    """lr_t = lr_0 gamma^floor(t / step_size).   Reference: torch.optim.lr_scheduler.StepLR."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(LRSchedule):
    """lr_t = lr_0 gamma^t.   Reference: torch.optim.lr_scheduler.ExponentialLR."""

    def __init__(self, optimizer, gamma):
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.base_lr * self.gamma ** t


class CosineAnnealingLR(LRSchedule):
    """lr_t = eta_min + (lr_0 - eta_min) (1 + cos(pi t / T_max)) / 2.
    Reference: Loshchilov & Hutter (2017); torch.optim.lr_scheduler.CosineAnnealingLR (closed form)."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer)

    def lr_at(self, t):
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "l1_regularization", "l2_regularization", "global_norm",
           "clip_grad_norm", "clip_grad_value", "LRSchedule", "StepLR", "ExponentialLR", "CosineAnnealingLR"]

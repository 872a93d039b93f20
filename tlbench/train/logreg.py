"""L2-regularised multinomial logistic regression by L-BFGS, over a grid of L2 strengths.

The linear-evaluation protocol of Kornblith et al. 2019 (also SimCLR's Table 8 and CLIP's linear
probes) fits, on frozen features, for every λ of a log grid

    f(W, b) = mean_i CE(W x_i + b, y_i) + λ/2 ‖W‖²          (the bias is not penalised)

which is scikit-learn's ``LogisticRegression(C=1 / (λ · n_train))``. The objective is strongly
convex in W, so each λ has one solution, whatever the solver starts from.

**How the grid is solved: one warm-started path along λ**, from the strongest penalty to the
weakest, each λ's solve starting from the previous λ's solution. Near-by λ have near-by optima, so
the warm start saves most of the iterations the ill-conditioned small-λ problems would take from
zero (the same idea as glmnet's regularisation path), and memory stays one problem's. Each λ is
its own ``torch.optim.LBFGS`` run (strong-Wolfe line search, history 10) with its own convergence
test: the largest gradient entry below ``tol`` times that of the start of the path (W = 0, a
scale-free test). Every iteration is two matrix products over all rows on the features' device:
on a GPU the whole grid of a 50k × 2048 matrix takes seconds.

Nothing here knows cells, models or MLflow: tensors in, solutions and their numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from tlbench.train.metrics import confusion, mean_per_class_acc

# Kornblith et al. 2019 / SimCLR: 45 log-spaced values in [1e-6, 1e5]
DEFAULT_GRID = tuple(float(v) for v in np.logspace(-6, 5, 45))
MAX_ITER = 1000  # per λ, as CLIP's scikit-learn probes
TOL = 1e-6  # max |gradient| / max |gradient at W = 0|
CHECK_EVERY = 10  # iterations between convergence tests (each costs one evaluation)
HISTORY = 10  # L-BFGS memory (scipy's and scikit-learn's default)
# float64, as scikit-learn: in float32 a line search stops seeing the objective decrease at a
# gradient of ~sqrt(eps · curvature · f) (~1e-3 here), so no convergence test could be met
DTYPE = torch.float64


@dataclass(frozen=True)
class Solution:
    """One λ's solve: the weights, how the solver ended, and the training objective there."""

    l2: float
    weight: torch.Tensor  # classes × features
    bias: torch.Tensor  # classes
    iterations: int
    grad_norm: float  # max |gradient| of the objective at the returned weights
    threshold: float  # the gradient test's bound: tol × max |gradient at W = 0|
    stop: str  # gradient (the test met) | stalled (no decrease left in float64) | max_iter
    loss: float  # the objective at the returned weights

    @property
    def converged(self) -> bool:
        """The gradient test met, or the objective at its minimum to working precision (a line
        search that finds no decrease left: scipy's and so scikit-learn's ``ftol`` stop)."""
        return self.stop != "max_iter"


@dataclass(frozen=True)
class Scores:
    """A linear classifier's numbers on one split."""

    loss: float
    acc: float
    mean_per_class_acc: float

    def get(self, metric: str) -> float:
        return float(getattr(self, metric))


@dataclass(frozen=True)
class Sweep:
    """Every λ of the grid (ascending) with its solution and validation scores, the chosen one,
    and the refit on train + val at the chosen λ (None with ``refit=False``)."""

    grid: tuple[float, ...]
    solutions: tuple[Solution, ...]  # in grid order
    val: tuple[Scores, ...]  # in grid order
    chosen: int
    refit: Solution | None

    @property
    def final(self) -> Solution:
        """The classifier to report test numbers of: the refit, or the chosen train-only one."""
        return self.refit if self.refit is not None else self.solutions[self.chosen]

    @property
    def not_converged(self) -> list[float]:
        solves = [*self.solutions, *([self.refit] if self.refit is not None else [])]
        return [s.l2 for s in solves if not s.converged]


def objective(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, l2: float
) -> torch.Tensor:
    """Mean cross-entropy + λ/2 ‖W‖² (bias not penalised)."""
    return F.cross_entropy(torch.addmm(bias, x, weight.t()), y) + 0.5 * l2 * weight.square().sum()


@dataclass
class _Problem:
    """A split's features, centred, and the eigenbasis of their covariance: the preconditioner.

    Two exact changes of variables make every λ well conditioned without changing its solution:
    the features are centred (x - μ; the unpenalised bias absorbs W μ), which decouples the bias
    from W when every feature is positive (post-ReLU), and W = u M with M = (h Σ + λ I)^(-1/2),
    b = β / √h (Σ the features' covariance, h = p(1 - p) at uniform p), which makes the
    objective's curvature ≈ 1 in every direction of u. Without them a strong penalty (W's
    curvature λ, the bias's ~1/C) and a weak one on correlated features (curvature spread as
    widely as Σ's eigenvalues) each took L-BFGS its whole iteration budget. M costs one
    eigendecomposition of the d × d covariance per problem, and a d × d product per evaluation.
    """

    x: torch.Tensor  # centred
    y: torch.Tensor
    mean: torch.Tensor
    eigvals: torch.Tensor  # of the centred features' covariance, ascending
    eigvecs: torch.Tensor
    num_classes: int

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, num_classes: int) -> _Problem:
        mean = x.mean(0)
        xc = x - mean
        e, v = torch.linalg.eigh(xc.t() @ xc / len(xc))
        return cls(xc, y, mean, e.clamp_min(0), v, num_classes)

    @property
    def curvature(self) -> float:
        """p(1 - p) at the uniform p: the softmax's curvature scale."""
        c = self.num_classes
        return (1 / c) * (1 - 1 / c)

    @cached_property
    def start_gradient(self) -> float:
        """max |∇f| at W = 0, b = 0 (the same for every λ): what the tolerance is relative to."""
        zeros = torch.zeros(self.num_classes, self.x.shape[1], dtype=self.x.dtype, device=self.x.device)
        return max(self.evaluate(zeros, zeros[:, 0], 0.0)[1], 1e-300)

    def evaluate(self, weight: torch.Tensor, bias: torch.Tensor, l2: float) -> tuple[float, float]:
        """The objective and max |∇f| (in W and b) at centred-feature weights."""
        w, b = weight.detach().requires_grad_(), bias.detach().requires_grad_()
        with torch.enable_grad():
            loss = objective(self.x, self.y, w, b, l2)
            grads = torch.autograd.grad(loss, (w, b))
        return float(loss.detach()), max(float(g.abs().max()) for g in grads)

    def preconditioner(self, l2: float, power: float = -0.5) -> torch.Tensor:
        """(h Σ + λ I)^power, symmetric."""
        v = self.eigvecs
        return (v * (self.curvature * self.eigvals + l2).pow(power)) @ v.t()


def solve(
    problem: _Problem,
    l2: float,
    *,
    init: Solution | None = None,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
) -> Solution:
    """Minimise the objective at one λ with L-BFGS, from ``init`` (warm start) or zero.

    Stops when max |∇f| ≤ ``tol`` · max |∇f at W = 0, b = 0| (scale-free, the same bound for every
    λ; checked every ``CHECK_EVERY`` iterations), when the line search finds no decrease left
    (the objective at its minimum in float64: a gradient can stay above the bound there when the
    features are tiny), or at ``max_iter`` (not converged)."""
    if l2 <= 0:
        raise ValueError(f"the L2 strength must be > 0, got {l2}")
    p = problem
    m = p.preconditioner(l2)
    s_b = p.curvature**-0.5
    if init is None:
        u = torch.zeros(p.num_classes, p.x.shape[1], dtype=p.x.dtype, device=p.x.device)
        beta = torch.zeros(p.num_classes, dtype=p.x.dtype, device=p.x.device)
    else:  # the previous solution in this problem's variables
        u = init.weight @ p.preconditioner(l2, 0.5)
        beta = (init.bias + init.weight @ p.mean) / s_b
    u.requires_grad_()
    beta.requires_grad_()
    threshold = tol * p.start_gradient
    opt = torch.optim.LBFGS(
        [u, beta],
        lr=1.0,
        max_iter=CHECK_EVERY,
        max_eval=3 * CHECK_EVERY,
        tolerance_grad=0.0,  # the test is on the unpreconditioned gradient, below
        tolerance_change=0.0,  # a step ends early only when its line search cannot move
        history_size=HISTORY,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective(p.x, p.y, u @ m, beta * s_b, l2)
        loss.backward()
        return loss

    iterations, loss, grad = 0, *p.evaluate(u @ m, beta * s_b, l2)
    stop = "gradient"
    while grad > threshold:
        if iterations >= max_iter:
            stop = "max_iter"
            break
        chunk = opt.param_groups[0]["max_iter"] = min(CHECK_EVERY, max_iter - iterations)
        with torch.enable_grad():
            opt.step(closure)
        done = int(opt.state[u].get("n_iter", 0))
        stalled = done - iterations < chunk  # a step ends early only when it cannot move
        iterations, (loss, grad) = done, p.evaluate(u @ m, beta * s_b, l2)
        if stalled and grad > threshold:
            stop = "stalled"
            break
    weight = (u @ m).detach()
    return Solution(
        l2=float(l2),
        weight=weight,
        bias=(beta * s_b).detach() - weight @ p.mean,  # back to the features as they are
        iterations=iterations,
        grad_norm=grad,
        threshold=threshold,
        stop=stop,
        loss=loss,
    )


@torch.no_grad()
def score(x: torch.Tensor, y: torch.Tensor, num_classes: int, sol: Solution) -> Scores:
    """Loss, top-1 and mean per-class accuracy of a solution on one split."""
    logits = torch.addmm(sol.bias, x, sol.weight.t())
    pred = logits.argmax(1)
    return Scores(
        loss=float(F.cross_entropy(logits, y)),
        acc=float((pred == y).double().mean()),
        mean_per_class_acc=mean_per_class_acc(confusion(y, pred, num_classes)),
    )


def check_grid(grid: Sequence[float]) -> tuple[float, ...]:
    """The L2 strengths sorted ascending, each > 0 and listed once."""
    values = tuple(sorted({float(v) for v in grid}))
    if not values or values[0] <= 0:
        raise ValueError(f"L2 strengths must be > 0, got {list(grid)}")
    return values


def sweep(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    num_classes: int,
    grid: Sequence[float] = DEFAULT_GRID,
    *,
    metric: str = "acc",
    refit: bool = True,
    max_iter: int = MAX_ITER,
    tol: float = TOL,
) -> Sweep:
    """Solve every λ (warm path, strongest first), pick the λ with the best validation ``metric``
    (ties: the strongest penalty among them), then refit on train + val at it, warm-started from
    the train-only solution. Solved in ``DTYPE`` whatever the features' dtype."""
    values = check_grid(grid)
    (xt, yt), (xv, yv) = ((x.to(DTYPE), y) for x, y in (train, val))
    problem = _Problem.of(xt, yt, num_classes)
    solutions: dict[int, Solution] = {}
    last: Solution | None = None
    for i in reversed(range(len(values))):  # strongest first: W starts near 0, then moves out
        last = solutions[i] = solve(problem, values[i], init=last, max_iter=max_iter, tol=tol)
    ordered = tuple(solutions[i] for i in range(len(values)))
    val_scores = tuple(score(xv, yv, num_classes, s) for s in ordered)
    best = max(v.get(metric) for v in val_scores)
    chosen = max(i for i, v in enumerate(val_scores) if v.get(metric) == best)  # ties: strongest λ
    refitted = None
    if refit:
        both = _Problem.of(torch.cat([xt, xv]), torch.cat([yt, yv]), num_classes)
        refitted = solve(both, values[chosen], init=ordered[chosen], max_iter=max_iter, tol=tol)
    return Sweep(values, ordered, val_scores, chosen, refitted)

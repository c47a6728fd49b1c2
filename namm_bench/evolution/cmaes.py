"""CMA-ES with the paper's settings, on the maintained ``cma`` library (pycma).

pycma expresses what ``namm-reference.md`` section 5.1 fixes: full covariance, population 32,
mu = 16 parents with the log-rank weights ln((lambda+1)/2) - ln(i) (the first ones 0.198, 0.149,
0.120 ...), active (negative) weights for the covariance, cumulative step-size adaptation (CSA;
pycma would pick two-point adaptation for this dimension unless told), mean start 0 and sigma0
0.065. Two small differences from the reference remain, documented in ``docs/decisions.md``:
pycma's c_mu is 8.65e-7 where the reference computes 8.37e-7, and the reference's one-off 1e-6
added to every covariance entry at generation 0 is not reproduced.

pycma samples with NumPy's global generator, so the saved state holds that generator's state
too: a resumed run draws exactly the populations the uninterrupted one would have.
"""

from __future__ import annotations

import pickle
from typing import Any

import cma
import numpy as np


class CMAES:
    """Maximises fitness. ``ask`` returns the population (population, dim) as float64."""

    def __init__(
        self, dim: int, population: int, sigma0: float, elite_ratio: float, seed: int, x0: np.ndarray | None = None
    ) -> None:
        opts = {
            "popsize": population,
            "CMA_mu": max(1, int(population * elite_ratio)),
            "CMA_active": True,
            "AdaptSigma": cma.sigma_adaptation.CMAAdaptSigmaCSA,
            "seed": seed + 1,  # pycma treats seed 0 as "draw a random seed"
            "verbose": -9,
            "CMA_diagonal": False,
        }
        x0 = np.zeros(dim) if x0 is None else np.asarray(x0, dtype=np.float64)  # the zero NAMM keeps everything
        self.es = cma.CMAEvolutionStrategy(x0, sigma0, opts)

    def ask(self, number: int | None = None) -> np.ndarray:
        """The next population, or ``number`` samples from the current distribution."""
        return np.stack(self.es.ask(number))

    def tell(self, population: np.ndarray, fitness: np.ndarray) -> None:
        self.es.tell(list(population), [-float(f) for f in fitness])  # pycma minimises

    @property
    def mean(self) -> np.ndarray:
        return np.array(self.es.mean, dtype=np.float64)

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    def state(self) -> dict[str, Any]:
        return {"es": pickle.dumps(self.es), "numpy_rng": np.random.get_state()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CMAES:
        self = cls.__new__(cls)
        self.es = pickle.loads(state["es"])
        np.random.set_state(state["numpy_rng"])
        return self

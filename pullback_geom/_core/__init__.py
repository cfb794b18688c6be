"""The numerical core: pure torch, importing nothing else of the package.

- :mod:`~pullback_geom._core.derivatives`: forward-mode Jacobians, Hessians, Christoffel
  symbols and geodesic accelerations of a flat batched map ``(B, d) -> (B, D)``;
- :mod:`~pullback_geom._core.chain`: the same for ``nn.Sequential`` decoders by the
  explicit layer-by-layer chain rule;
- :mod:`~pullback_geom._core.kernels`: a decoder's flat map and its kernels on one chunk;
- :mod:`~pullback_geom._core.curvature`: curvature by the Gauss equation;
- :mod:`~pullback_geom._core.linalg`: one policy for regularised SPD solves, and the
  block-tridiagonal Cholesky of the curve solvers;
- :mod:`~pullback_geom._core.evaluate`: the one evaluator of a metric's decoder: point
  checks, chunked evaluation and its memory budget;
- :mod:`~pullback_geom._core.smoothness`: whether a decoder is smooth enough for the
  geodesic ODE;
- :mod:`~pullback_geom._core.checks`: input checks whose errors name the problem;
- :mod:`~pullback_geom._core.extras`: imports of optional libraries whose errors name the
  extra to install.

Private to the package (the names here may change); :class:`~pullback_geom.PullbackMetric`
is the public face.
"""

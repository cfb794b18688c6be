"""Whether a decoder is smooth enough for the geodesic ODE, decided in one place.

The geodesic ODE ``z'' = -Gamma(z)(z', z')`` needs Christoffel symbols that vary
continuously, i.e. a decoder with continuous second derivatives (C2). A piecewise-linear
decoder (ReLU) has a metric that is constant on each linear region and jumps across
their boundaries, so its Christoffel symbols are zero almost everywhere and undefined
where it matters; the discrete geodesic calculus, which only decodes points, handles it.

:func:`is_smooth` looks for the ``nn.Module`` layers a decoder is made of and calls it
smooth iff none is piecewise linear or not twice continuously differentiable. Layers
called functionally (``torch.relu`` inside a ``forward``) are invisible to it: such
decoders, and plain functions that are piecewise linear, need ``smooth=False`` given
explicitly to :class:`~pullback_geom.PullbackMetric`.
"""

from __future__ import annotations

from torch import nn

from .modules import modules_in

__all__ = ["NONSMOOTH_LAYERS", "is_smooth"]

#: Layers whose output is not twice continuously differentiable in their input.
NONSMOOTH_LAYERS: tuple[type[nn.Module], ...] = (
    # piecewise linear: the metric is constant on each region and jumps between them
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Threshold,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
    nn.MaxUnpool1d,
    nn.MaxUnpool2d,
    nn.MaxUnpool3d,
    # C1 but not C2: the metric is continuous, but its derivatives, and with them the
    # Christoffel symbols the ODE integrates, jump where the input crosses 0
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Softsign,
)


def is_smooth(decoder) -> bool:
    """Whether ``decoder`` is smooth enough (C2) for the geodesic ODE.

    The ``nn.Module`` layers inside the decoder are found: the decoder itself if it is a
    module (a :class:`~pullback_geom._core.kernels.GaussianDecoder`'s mean and std too),
    a bound method's object, a ``functools.partial``'s function and arguments, the
    variables a function closes over and the globals it names, an object's attributes,
    followed a few wrappers deep. If any module was found, the decoder is smooth iff
    none of their submodules is in :data:`NONSMOOTH_LAYERS`. If none was found (a plain
    function, such as the analytic decoders of :mod:`pullback_geom.surfaces`), it is
    taken to be smooth.

    Parameters
    ----------
    decoder : callable

    Returns
    -------
    bool
    """
    modules = modules_in(decoder)
    return not any(
        isinstance(layer, NONSMOOTH_LAYERS) for module in modules for layer in module.modules()
    )

"""Image data: MNIST and FashionMNIST read from torchvision's files
(:mod:`~pullback_geom.data.datasets`), the bundled MNIST test head, and the digit orbit,
a dataset whose image manifold and geodesic distances are known exactly
(:mod:`~pullback_geom.data.digit_orbit`)."""

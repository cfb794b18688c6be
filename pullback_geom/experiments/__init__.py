"""Experiments built on the library; nothing in the library imports them.

- :mod:`~pullback_geom.experiments.compare`: every geodesic method on the same pairs;
- :mod:`~pullback_geom.experiments.learning`: geomstats' learning tools on a latent space;
- :mod:`~pullback_geom.experiments.neighbours`: the one kNN classifier on a distance matrix;
- :mod:`~pullback_geom.experiments.curvature_stats`: curvature of a trained model;
- :mod:`~pullback_geom.experiments.identifiability`: distances across retrained models;
- :mod:`~pullback_geom.experiments.report`: the write-up's figures and claims.
"""

"""The map of a collection: every indexed image as a point on a 2-D layout of its embedding.

* :mod:`~lookalike.map.layout`: the layout (PCA, then UMAP) and placing new points on it;
* :mod:`~lookalike.map.groups`: what colours it: folders, k-means clusters and their central images;
* :mod:`~lookalike.map.cache`: the map kept beside an index in ``map.npz``, up to date with its ids.
"""

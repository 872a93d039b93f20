"""Transferability: how well each backbone of a grid is predicted to transfer to a dataset,
from one forward pass over the target data, before (or instead of) fine-tuning it.

One module per score, each from its paper's definition (``logme``, ``leep``, ``nce``,
``hscore``, ``transrate``, ``knn``); ``scores`` names them for the command line.
"""

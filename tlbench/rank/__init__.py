"""``tlbench rank``: transferability scores for every (dataset, backbone) of a grid, from one
forward pass over the target data, checked against the grid's own results.

``targets`` (what is scored, through which cell), ``features`` (one forward pass per split,
through the feature store, and the source classifier's predictions), ``scores`` (the scores by
name), ``ranking`` (score, check, log) and ``order`` (the run order a score predicts). The
scores themselves are ``tlbench.transferability``'s; the agreement statistics ``tlbench.stats``'.
"""

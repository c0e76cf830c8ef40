"""``camscope audit``: shortcuts and data-set bias found in the maps: per class, how much of the
map lies on the objects and whether the maps peak at one fixed place. What each module holds:
the ``audit/`` paragraph of docs/architecture.md.
"""

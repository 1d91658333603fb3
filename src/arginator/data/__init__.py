"""Data: readers (every file format), labelled tables, targets, splits, homology groups and the Lightning DataModule.

Nothing is re-exported here: importing `arginator.data.readers` must not pull in torch (see `.importlinter`).
"""

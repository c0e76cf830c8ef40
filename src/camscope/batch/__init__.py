"""Explaining collections of images into files on disk.

* :mod:`.inputs`: files, folders, URLs or the demo images, with unique, safe output stems;
* :mod:`.files`: overlays, grids and ``.npy`` maps per image, as ``camscope explain`` writes them.

This package may import core, methods, models, io and viz; never the CLI.
"""

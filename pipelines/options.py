"""The data sources' names and the values of their options: plain data that imports nothing
(the `reseg` command's flags list them). `pipelines.sources` registers a source class under each
name, and it and `pipelines.mask_formats` import these again.
"""
SOURCE_NAMES = ("camvid", "weizmann_horse", "oxford_flowers17", "folder")
WEIZMANN_HORSE_IMAGE_FOLDERS = ("rgb", "gray")
# Oxford Flowers 17 layouts: variant -> (image folder, mask folder); "auto" picks one on disk.
OXFORD_FLOWERS17_FOLDERS = {"original": ("jpg", "trimaps"), "256": ("images_256", "labels_256")}
OXFORD_FLOWERS17_VARIANTS = ("auto", *OXFORD_FLOWERS17_FOLDERS)
# The `folder` source's mask formats and what it does with colours missing from a palette file
# (`pipelines.mask_formats`).
MASK_FORMATS = ("index", "rgb", "palette")
UNKNOWN_COLOR_MODES = ("error", "void")

"""The data sources' names and the values of their options: plain data that imports no
TensorFlow (the `reseg` command's flags list them). `pipelines.sources` registers a source class
under each name and imports these again; `pipelines.mask_formats` holds the folder source's
mask formats.
"""
SOURCE_NAMES = ("camvid", "weizmann_horse", "oxford_flowers17", "folder")
WEIZMANN_HORSE_IMAGE_FOLDERS = ("rgb", "gray")
# Oxford Flowers 17 layouts: variant -> (image folder, mask folder); "auto" picks one on disk.
OXFORD_FLOWERS17_FOLDERS = {"original": ("jpg", "trimaps"), "256": ("images_256", "labels_256")}
OXFORD_FLOWERS17_VARIANTS = ("auto", *OXFORD_FLOWERS17_FOLDERS)

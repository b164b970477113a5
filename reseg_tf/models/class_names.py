"""The class names of the shipped tasks (plain data, importable without Keras)."""
CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)
BINARY_CLASSES = ("background", "foreground")

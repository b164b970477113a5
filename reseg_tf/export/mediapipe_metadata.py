"""MediaPipe ImageSegmenter metadata in exported `.tflite` files, written and read back.

MediaPipe Tasks' `ImageSegmenter` (Android, iOS, web, Python) reads three things from a model's
metadata: how to normalize the input image, the class labels and the output activation. A
`.tflite` file carries them as

- a `TFLITE_METADATA` entry in the model's `metadata` list, pointing at a buffer that holds a
  `ModelMetadata` flatbuffer (file identifier `M001`, MediaPipe's `metadata_schema.fbs`): one
  subgraph with an RGB image input tensor (a `NormalizationOptions` process unit: mean 0, std 1,
  since the model takes raw 0..255 pixels and normalizes them itself) and a segmentation-mask
  output tensor (a grayscale image over dimensions 1..2, with `labels.txt` as its
  `TENSOR_AXIS_LABELS` file), and the subgraph's `SEGMENTER_METADATA` custom metadata, an
  `ImageSegmenterOptions` flatbuffer (identifier `V001`) whose activation is `NONE`: the model's
  last layer already is a softmax;
- `labels.txt` (the class names, one a line) in a zip archive appended to the model file, where
  the metadata readers look for associated files. Interpreters ignore the bytes after the model.

The tables are built here with the `flatbuffers` runtime (a TensorFlow dependency) from the
schema's field numbers, so exports need no MediaPipe installation; MediaPipe's Python package
(the `mediapipe` extra) runs the segmenter on the result in export verification.
"""
import io
import zipfile

METADATA_NAME = "TFLITE_METADATA"
LABEL_FILE = "labels.txt"
SEGMENTER_METADATA_NAME = "SEGMENTER_METADATA"
# Custom metadata in the subgraph table needs metadata parser 1.5.0.
MIN_PARSER_VERSION = "1.5.0"
_MODEL_METADATA_IDENTIFIER = b"M001"
_SEGMENTER_OPTIONS_IDENTIFIER = b"V001"
_ACTIVATIONS = ("NONE", "SIGMOID", "SOFTMAX")
_COLOR_SPACES = ("UNKNOWN", "RGB", "GRAYSCALE")
_IMAGE_PROPERTIES = 2  # ContentProperties union member
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union member
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


def _strings(builder, values):
    return {value: builder.CreateString(value) for value in values}


def _vector(builder, offsets):
    builder.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        builder.PrependUOffsetTRelative(offset)
    return builder.EndVector()


def _float_vector(builder, values):
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(float(value))
    return builder.EndVector()


def _table(builder, slots, fields):
    """A table of `slots` fields; `fields` are `(slot, kind, value)` with kind `offset`, `byte`
    or `int` (a value equal to the schema's default 0 is left out, as flatbuffers does)."""
    builder.StartObject(slots)
    for slot, kind, value in fields:
        if kind == "offset":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "byte":
            builder.PrependInt8Slot(slot, value, 0)
        else:
            builder.PrependInt32Slot(slot, value, 0)
    return builder.EndObject()


def segmenter_options_bytes(activation="NONE"):
    """An `ImageSegmenterOptions` flatbuffer (MediaPipe's `image_segmenter_metadata_schema.fbs`)."""
    import flatbuffers

    builder = flatbuffers.Builder(64)
    builder.Finish(_table(builder, 2, [(0, "byte", _ACTIVATIONS.index(activation))]),
                   file_identifier=_SEGMENTER_OPTIONS_IDENTIFIER)
    return bytes(builder.Output())


def model_metadata_bytes(class_names, model_name, description, uint8_input=False):
    """The `ModelMetadata` flatbuffer of an image segmenter taking raw 0..255 RGB pixels.

    `uint8_input`: the input tensor is uint8 (the `int8` variant), whose pixels MediaPipe passes
    as they are: stats 0..255 instead of the float normalization's range.
    """
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    text = _strings(builder, ["image", "segmentation_masks", LABEL_FILE, SEGMENTER_METADATA_NAME,
                              model_name, description, MIN_PARSER_VERSION,
                              "Input image, RGB pixel values 0..255 at the model's input size.",
                              "Class probabilities per pixel (softmax applied).",
                              "Class names, one per output channel."])
    # Input: RGB image, normalization mean 0 / std 1 (raw pixels), stats 0..255.
    image_properties = _table(builder, 2, [(0, "byte", _COLOR_SPACES.index("RGB"))])
    input_content = _table(builder, 3, [(0, "byte", _IMAGE_PROPERTIES), (1, "offset", image_properties)])
    normalization = _table(builder, 2, [(0, "offset", _float_vector(builder, [0.0])),
                                        (1, "offset", _float_vector(builder, [1.0]))])
    process_unit = _table(builder, 2, [(0, "byte", _NORMALIZATION_OPTIONS), (1, "offset", normalization)])
    input_stats = _table(builder, 2, [(0, "offset", _float_vector(builder, [255.0])),
                                      (1, "offset", _float_vector(builder, [0.0]))])
    process_units = [] if uint8_input else [process_unit]
    input_fields = [(0, "offset", text["image"]),
                    (1, "offset", text["Input image, RGB pixel values 0..255 at the model's input size."]),
                    (3, "offset", input_content), (5, "offset", input_stats)]
    if process_units:
        input_fields.append((4, "offset", _vector(builder, process_units)))
    input_tensor = _table(builder, 7, input_fields)
    # Output: a grayscale "image" over dimensions 1..2 (height, width), labels along the last axis.
    mask_properties = _table(builder, 2, [(0, "byte", _COLOR_SPACES.index("GRAYSCALE"))])
    value_range = _table(builder, 2, [(0, "int", 1), (1, "int", 2)])
    output_content = _table(builder, 3, [(0, "byte", _IMAGE_PROPERTIES), (1, "offset", mask_properties),
                                         (2, "offset", value_range)])
    label_file = _table(builder, 5, [(0, "offset", text[LABEL_FILE]),
                                     (1, "offset", text["Class names, one per output channel."]),
                                     (2, "byte", _TENSOR_AXIS_LABELS)])
    output_stats = _table(builder, 2, [])
    output_tensor = _table(builder, 7, [(0, "offset", text["segmentation_masks"]),
                                        (1, "offset", text["Class probabilities per pixel (softmax applied)."]),
                                        (3, "offset", output_content), (5, "offset", output_stats),
                                        (6, "offset", _vector(builder, [label_file]))])
    options = builder.CreateByteVector(segmenter_options_bytes("NONE"))
    custom = _table(builder, 2, [(0, "offset", text[SEGMENTER_METADATA_NAME]), (1, "offset", options)])
    subgraph = _table(builder, 10, [(2, "offset", _vector(builder, [input_tensor])),
                                    (3, "offset", _vector(builder, [output_tensor])),
                                    (9, "offset", _vector(builder, [custom]))])
    metadata = _table(builder, 8, [(0, "offset", text[model_name]), (1, "offset", text[description]),
                                   (3, "offset", _vector(builder, [subgraph])),
                                   (7, "offset", text[MIN_PARSER_VERSION])])
    builder.Finish(metadata, file_identifier=_MODEL_METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _strip_appended_zip(content):
    """The model flatbuffer of `content` without an appended associated-files archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            first = min((info.header_offset for info in archive.infolist()), default=None)
    except zipfile.BadZipFile:
        return content
    return content if first is None else content[:first]


def strip_appended_archive(content):
    """The model flatbuffer of `.tflite` bytes, without the associated files appended to it."""
    return _strip_appended_zip(bytes(content))


def add_segmenter_metadata(content, class_names, model_name, description, pack=None):
    """`.tflite` bytes `content` with ImageSegmenter metadata and `labels.txt` (replacing any
    metadata of that name already there); the model's ops, tensors and weights are unchanged.
    `pack` writes the model object (flatbuffers object API) to bytes; default the plain writer."""
    import numpy as np
    from ai_edge_litert.tools import flatbuffer_utils
    from ai_edge_litert import schema_py_generated as schema

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(_strip_appended_zip(bytes(content))))
    input_type = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]].type
    metadata = model_metadata_bytes(class_names, model_name, description,
                                    uint8_input=input_type == schema.TensorType.UINT8)
    model.metadata = model.metadata or []
    entry = next((entry for entry in model.metadata if entry.name in (METADATA_NAME, METADATA_NAME.encode())), None)
    if entry is None:  # else its buffer is reused
        model.buffers.append(schema.BufferT())
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = np.frombuffer(metadata, np.uint8)
    pack = pack or (lambda model: bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    combined = io.BytesIO(pack(model))
    # Appended to a file that is not a zip archive, zipfile starts a new archive at its end.
    with zipfile.ZipFile(combined, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr(LABEL_FILE, "".join(f"{name}\n" for name in class_names))
    return combined.getvalue()


class _Reader:
    """Field access into one flatbuffer table (the runtime's `Table`, by schema field number)."""

    def __init__(self, data, position):
        from flatbuffers.table import Table

        self.table = Table(bytearray(data), position)

    def _offset(self, slot):
        return self.table.Offset(4 + 2 * slot)

    def string(self, slot):
        offset = self._offset(slot)
        return self.table.String(offset + self.table.Pos).decode() if offset else None

    def byte(self, slot):
        import flatbuffers

        offset = self._offset(slot)
        return self.table.Get(flatbuffers.number_types.Int8Flags, offset + self.table.Pos) if offset else 0

    def int(self, slot):
        import flatbuffers

        offset = self._offset(slot)
        return self.table.Get(flatbuffers.number_types.Int32Flags, offset + self.table.Pos) if offset else 0

    def child(self, slot):
        offset = self._offset(slot)
        return _Reader(self.table.Bytes, self.table.Indirect(offset + self.table.Pos)) if offset else None

    def children(self, slot):
        offset = self._offset(slot)
        if not offset:
            return []
        start = self.table.Vector(offset)
        return [_Reader(self.table.Bytes, self.table.Indirect(start + 4 * index))
                for index in range(self.table.VectorLen(offset))]

    def floats(self, slot):
        import flatbuffers

        offset = self._offset(slot)
        if not offset:
            return []
        start = self.table.Vector(offset)
        return [self.table.Get(flatbuffers.number_types.Float32Flags, start + 4 * index)
                for index in range(self.table.VectorLen(offset))]

    def bytes(self, slot):
        offset = self._offset(slot)
        if not offset:
            return b""
        start = self.table.Vector(offset)
        return bytes(self.table.Bytes[start:start + self.table.VectorLen(offset)])


def _root(data):
    import flatbuffers

    return _Reader(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, bytearray(data), 0))


def read_segmenter_metadata(content):
    """What a `.tflite` file's ImageSegmenter metadata says, as a dict: `name`, `labels` (from
    the packed `labels.txt`), `color_space`, `mean`, `std`, `input_stats`, `activation`,
    `label_file`, `min_parser_version`. ValueError when the file has none."""
    from ai_edge_litert.tools import flatbuffer_utils

    content = bytes(content)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(_strip_appended_zip(content)))
    entries = [entry for entry in (model.metadata or []) if entry.name in (METADATA_NAME, METADATA_NAME.encode())]
    if not entries:
        raise ValueError(f"the model has no {METADATA_NAME} metadata")
    data = bytes(model.buffers[entries[0].buffer].data)
    if data[4:8] != _MODEL_METADATA_IDENTIFIER:
        raise ValueError(f"{METADATA_NAME} is not a ModelMetadata flatbuffer ({data[4:8]!r})")
    metadata = _root(data)
    subgraph = metadata.children(3)[0]
    image, = subgraph.children(2)
    mask, = subgraph.children(3)
    units = image.children(4)
    normalization = units[0].child(1) if units and units[0].byte(0) == _NORMALIZATION_OPTIONS else None
    custom = {entry.string(0): entry.bytes(1) for entry in subgraph.children(9)}
    options = custom.get(SEGMENTER_METADATA_NAME)
    label_files = [entry.string(0) for entry in mask.children(6) if entry.byte(2) == _TENSOR_AXIS_LABELS]
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        labels = archive.read(label_files[0]).decode().splitlines() if label_files else []
    stats = image.child(5)
    return {
        "name": metadata.string(0),
        "labels": labels,
        "label_file": label_files[0] if label_files else None,
        "color_space": _COLOR_SPACES[image.child(3).child(1).byte(0)],
        "mean": normalization.floats(0) if normalization else None,
        "std": normalization.floats(1) if normalization else None,
        "input_stats": {"min": stats.floats(1), "max": stats.floats(0)} if stats else None,
        "output_range": (mask.child(3).child(2).int(0), mask.child(3).child(2).int(1)),
        "activation": _ACTIVATIONS[_root(options).byte(0)] if options else None,
        "min_parser_version": metadata.string(7),
    }

"""The SavedModel's serving signatures and the bounds of their inputs, defined once.

Every signature takes images of any size up to the export's `ServingLimits` and answers at the
size of the images sent. `serving_default`, `serving_uint8` and `serving_bytes` return
`OUTPUT_KEYS`: `probabilities` float32 `(B, H, W, num_classes)` and `classes` int32 `(B, H, W)`;
`serving_mask` returns `mask_bytes`, each image's class-index mask as a PNG file (a compact
answer: TF Serving's REST API base64-encodes outputs whose name ends in `_bytes`). The SavedModel
writer (`saved_model.py`), its verification (`verify.py`), the generated `serving.md`
(`serving_doc.py`) and the CLI's help all read this table; a new signature is one entry here
plus its input decoding in `saved_model.serving_functions`.
"""
import dataclasses

# A request at these bounds peaks under 2 GB of resident memory when the shipped CamVid model
# serves it (`benchmarks/serving_drill.py` measures it; docs/export.md).
DEFAULT_MAX_IMAGE_PIXELS = 2_097_152  # 2048x1024: a 1920x1080 frame fits
DEFAULT_MAX_BATCH = 2


@dataclasses.dataclass(frozen=True)
class ServingLimits:
    """The bounds every serving signature checks in its graph before anything image-sized is
    allocated; a request over them is refused with `INVALID_ARGUMENT` naming the bound.

    Attributes:
        max_image_pixels: most pixels (height x width) of one image.
        max_batch: most images in one request.
    """

    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self):
        for name in ("max_image_pixels", "max_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ServingSignature:
    """One serving signature of the exported SavedModel.

    Attributes:
        name: the signature name clients ask for (`signature_name` in REST).
        input_name: the name of its one input tensor.
        dtype: the input's dtype name (`float32`, `uint8` or `string`).
        shape: the input's shape, as the docs write it.
        description: what the client sends, for `serving.md`.
        outputs: the names of its output tensors.
    """

    name: str
    input_name: str
    dtype: str
    shape: str
    description: str
    outputs: tuple = ("probabilities", "classes")


ENCODED_FILES = "encoded JPEG/PNG/GIF/BMP/WebP files (base64 in REST), one size per request"
SERVING_SIGNATURES = (
    ServingSignature("serving_default", "images", "float32", "(B, H, W, 3)", "raw RGB 0..255, any `H`, `W`"),
    ServingSignature("serving_uint8", "images", "uint8", "(B, H, W, 3)",
                     "the same pixels as bytes (TF Serving casts JSON numbers to the dtype)"),
    ServingSignature("serving_bytes", "image_bytes", "string", "(B,)", ENCODED_FILES),
    ServingSignature("serving_mask", "image_bytes", "string", "(B,)", ENCODED_FILES, outputs=("mask_bytes",)),
)
SIGNATURES = tuple(signature.name for signature in SERVING_SIGNATURES)
DEFAULT_SIGNATURE, UINT8_SIGNATURE, BYTES_SIGNATURE, MASK_SIGNATURE = SERVING_SIGNATURES
OUTPUT_KEYS = DEFAULT_SIGNATURE.outputs

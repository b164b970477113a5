"""The SavedModel's serving signatures, defined once.

Every signature takes images of any size and returns `OUTPUT_KEYS` at the size of the images
sent: `probabilities` float32 `(B, H, W, num_classes)` and `classes` int32 `(B, H, W)`. The
SavedModel writer (`saved_model.py`), its verification (`verify.py`), the generated `serving.md`
(`serving_doc.py`) and the CLI's help all read this table; a new signature is one entry here
plus its input decoding in `saved_model.serving_functions`.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class ServingSignature:
    """One serving signature of the exported SavedModel.

    Attributes:
        name: the signature name clients ask for (`signature_name` in REST).
        input_name: the name of its one input tensor.
        dtype: the input's dtype name (`float32`, `uint8` or `string`).
        shape: the input's shape, as the docs write it.
        description: what the client sends, for `serving.md`.
    """

    name: str
    input_name: str
    dtype: str
    shape: str
    description: str


SERVING_SIGNATURES = (
    ServingSignature("serving_default", "images", "float32", "(B, H, W, 3)", "raw RGB 0..255, any `H`, `W`"),
    ServingSignature("serving_uint8", "images", "uint8", "(B, H, W, 3)",
                     "the same pixels as bytes (TF Serving casts JSON numbers to the dtype)"),
    ServingSignature("serving_bytes", "image_bytes", "string", "(B,)",
                     "encoded JPEG/PNG/BMP/GIF files (base64 in REST), one size per request"),
)
SIGNATURES = tuple(signature.name for signature in SERVING_SIGNATURES)
DEFAULT_SIGNATURE, UINT8_SIGNATURE, BYTES_SIGNATURE = SERVING_SIGNATURES
OUTPUT_KEYS = ("probabilities", "classes")


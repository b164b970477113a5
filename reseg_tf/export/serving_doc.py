"""`serving.md`: the TF Serving docker command and REST requests matching the signatures."""
from pathlib import Path

from reseg_tf.export.signatures import BYTES_SIGNATURE, DEFAULT_SIGNATURE, MASK_SIGNATURE, SERVING_SIGNATURES, ServingLimits
from reseg_tf.run_files import atomic_write_text


def write_serving_doc(path, model_name, saved_model_root, config, image_size, fixed_size, version, tta="none",
                      tflite_input_size=None, limits=None):
    """Writes `serving.md` for the latest export.

    Args:
        path: the file to write.
        model_name: the TF Serving model name.
        saved_model_root: the TF Serving model base path (holds the version folders).
        config: the model's `ReSegConfig`.
        image_size: `(h, w)` of the static TFLite models.
        fixed_size: the model's fixed input size, or None if it accepts any size.
        version: the SavedModel version just written.
        tta: the test-time augmentation baked into the artifacts.
        tflite_input_size: `(H, W)` the TFLite models take when it differs from `image_size`
            (the resizes are then in the models).
        limits: the signatures' `signatures.ServingLimits` (default: the defaults).
    """
    limits = limits or ServingLimits()
    root = Path(saved_model_root).resolve()
    height, width = image_size
    if tflite_input_size and tuple(tflite_input_size) != tuple(image_size):
        in_height, in_width = tflite_input_size
        tflite_resize = (f"The model runs at {height}x{width}; the resize of the frame to that size as "
                         f"training resizes (bilinear with antialiasing, rounded to whole pixel values) and "
                         f"the resize of the probabilities back to {in_height}x{in_width} are inside the "
                         f"file, so frames of {in_height}x{in_width} need no resizing (MediaPipe's "
                         "ImageSegmenter then resizes nothing either). Resize frames of other sizes to "
                         f"{in_height}x{in_width} first.")
    else:
        in_height, in_width = height, width
        tflite_resize = (f"To answer like `reseg predict`, resize an image to {height}x{width} as training "
                         "does (bilinear with antialiasing, rounded to whole pixel values: "
                         "`reseg_tf.inference.to_working_size`), and resize the probabilities back to the "
                         "image's size (bilinear) before taking the argmax.")
    size_note = (f"The model runs at {fixed_size[0]}x{fixed_size[1]}: every signature resizes the images "
                 "it gets to that size as training did (antialiased bilinear) and resizes the "
                 "probabilities back, so the answers have the size of the images sent, as "
                 "`reseg predict` gives them."
                 if fixed_size else
                 "The model accepts any image size and answers at the size of the images sent.")
    if tta == "flip":
        size_note += (" Flip test-time augmentation is built in: every artifact averages the class "
                      "probabilities of each image and of its horizontal mirror (two passes per image), "
                      "as `reseg predict --tta flip`.")
    classes = ", ".join(f"{i}={name}" for i, name in enumerate(config.class_names))
    outputs = (f"`probabilities` float32 `(B, H, W, {config.num_classes})`, `classes` int32 `(B, H, W)`")
    mask_outputs = (f"`{MASK_SIGNATURE.outputs[0]}` string `(B,)`: each image's class-index mask (`H` x `W`, "
                    f"{'8' if config.num_classes <= 256 else '16'}-bit gray) as a PNG file")
    signature_rows = "\n".join(
        f"| `{s.name}` | `{s.input_name}` {s.dtype} `{s.shape}`: {s.description} | "
        f"{mask_outputs if s is MASK_SIGNATURE else outputs if i == 0 else 'same'} |"
        for i, s in enumerate(SERVING_SIGNATURES))
    default, encoded, mask = DEFAULT_SIGNATURE, BYTES_SIGNATURE, MASK_SIGNATURE
    text = f"""# Serving `{model_name}` with TF Serving

Latest export: version {version} in `{root}` (TF Serving loads the highest version).

```sh
docker run --rm -p 8501:8501 -p 8500:8500 \\
  --mount type=bind,source={root},target=/models/{model_name} \\
  -e MODEL_NAME={model_name} -t tensorflow/serving
```

## Signatures

| signature | input | outputs |
|---|---|---|
{signature_rows}

{size_note} All images of one request must share a size (a `{encoded.name}` request mixing sizes
is refused with an error saying so); send differently sized images in separate requests.
Classes: {classes}.

## Limits

Every signature refuses, with `INVALID_ARGUMENT` naming the limit and the size sent, an image
of more than **{limits.max_image_pixels:,} pixels** (height x width) and a request of more than
**{limits.max_batch} images**, set at export (`reseg export --max-image-pixels N --max-batch B`).
Encoded files are checked from their header before anything is decoded (JPEG, PNG, GIF, BMP,
WebP; other formats are refused; a GIF counts by its first frame, the one answered). Pixel
requests and files are as large as the client makes them, and TF Serving reads a whole request
before the graph sees it: bound requests in the server too (gRPC:
`--grpc_channel_arguments=grpc.max_receive_message_length=BYTES`; REST: a body size limit in the
proxy in front of port 8501). See the export documentation for TF Serving's batching.

## REST: pixels (`{default.name}`)

```sh
python - <<'EOF' > request.json
import json, numpy as np
from PIL import Image
image = np.asarray(Image.open("image.png").convert("RGB"), dtype=np.float32)
print(json.dumps({{"signature_name": "{default.name}", "instances": [image.tolist()]}}))
EOF
curl -s -X POST http://localhost:8501/v1/models/{model_name}:predict -d @request.json
```

## REST: encoded images (`{encoded.name}`)

```sh
echo '{{"signature_name": "{encoded.name}", "instances": [{{"{encoded.input_name}": {{"b64": "'"$(base64 -w0 image.png)"'"}}}}]}}' > request.json
curl -s -X POST http://localhost:8501/v1/models/{model_name}:predict -d @request.json
```

## REST: the mask as a PNG file (`{mask.name}`)

The compact answer: one PNG per image whose pixel values are the class indices, a few kilobytes
where the probabilities are megabytes.

```sh
echo '{{"signature_name": "{mask.name}", "instances": [{{"{mask.input_name}": {{"b64": "'"$(base64 -w0 image.png)"'"}}}}]}}' > request.json
curl -s -X POST http://localhost:8501/v1/models/{model_name}:predict -d @request.json \\
  | python -c 'import base64, json, sys; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["predictions"][0]["b64"]))' > mask.png
```

(With one output TF Serving's REST answer lists the output's values directly:
`{{"predictions": [{{"b64": "..."}}]}}`.)

`{encoded.name}` decodes the pixels as they are stored and ignores an EXIF orientation tag (the
tag portrait phone photos carry): the answer lines up with the stored pixel grid, not with the
photo as viewers show it. `reseg predict` and `reseg evaluate` apply the tag; to get their answer
from the server (`{mask.name}` alike), turn the image upright before sending it (`PIL.ImageOps.exif_transpose`, or
pixels read by `reseg_tf.inference.read_image_file` sent to `{default.name}`).

The answer is `{{"predictions": [{{"probabilities": [...], "classes": [...]}}]}}`, one entry per
instance. Probabilities make large JSON answers; for big images prefer gRPC on port 8500
(`PredictRequest.output_filter` can ask for `classes` only).

## TFLite

`tflite/<version>/{model_name}_<variant>.tflite` take one `(1, {in_height}, {in_width}, 3)` image:
float32 raw pixels for `fp32`, `fp16`, `dynamic`; uint8 pixels for `int8`, quantized with the
input tensor's scale / zero point (1.0 / 0: the raw pixels). All return float32
probabilities `(1, {in_height}, {in_width}, {config.num_classes})`. {tflite_resize}
"""
    atomic_write_text(path, text)

"""In-graph image sizes read from file headers, so a serving signature refuses a file before
decoding it.

`tf.io.decode_image` allocates whatever a header claims: a 187 KB PNG can claim 8000x8000
pixels (a "decompression bomb"). `header_size` reads the stored height and width of every format
the decoder accepts, with the decoder's own format detection (the first bytes):

- JPEG: `tf.image.extract_jpeg_shape` (the frame header, wherever it is);
- PNG: the IHDR chunk, big-endian width and height at bytes 16-24;
- GIF: the first frame's image descriptor (the decoder allocates the frames' size, not the
  logical screen's). `tf.io.decode_image` reads every frame into memory before it keeps the
  first, so `gif_first_frame` cuts the file after its first frame: an animated GIF costs what its
  first frame costs;
- BMP: a BITMAPINFOHEADER (or larger) header, the layout the decoder reads: signed 32-bit width
  and height at bytes 18-26 (a negative height is a top-down image of that many rows);
- WebP: the `VP8 `, `VP8L` or `VP8X` chunk; an animated WebP is refused (the decoder cannot give
  it as RGB).

Anything else is refused. Every refusal is a `tf.errors.InvalidArgumentError` raised by an
assertion in the graph (TF Serving answers it as `INVALID_ARGUMENT`) whose message names the
limit and what was sent.
"""
import tensorflow as tf

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")  # in the order of the codes below (1..5)
UNKNOWN, JPEG, PNG, GIF, BMP, WEBP = range(6)
HEADER_BYTES = 32  # every fixed-position header field below lies in the first 32 bytes
# `header_size`'s height and width of a file whose header is broken or cannot be read.
BROKEN = -1


def _header(data):
    """The first `HEADER_BYTES` bytes of `data` as int64 (zero-padded for shorter files)."""
    raw = tf.io.decode_raw(tf.strings.substr(data, 0, HEADER_BYTES), tf.uint8)
    return tf.cast(tf.pad(raw, [[0, HEADER_BYTES - tf.size(raw)]]), tf.int64)


def _little_endian(header, start, count):
    return sum(header[start + i] * 256 ** i for i in range(count))


def _big_endian(header, start, count):
    return sum(header[start + i] * 256 ** (count - 1 - i) for i in range(count))


def _is(header, start, text):
    return tf.reduce_all(tf.equal(header[start:start + len(text)], tf.constant(list(text), tf.int64)))


def image_format(data):
    """int32 code (`JPEG`..`WEBP`, `UNKNOWN`) of encoded bytes, detected as the decoder does."""
    header = _header(data)
    code = tf.constant(UNKNOWN)
    for found, value in ((_is(header, 0, b"RIFF") & _is(header, 8, b"WEBP"), WEBP),
                         (_is(header, 0, b"BM"), BMP),
                         (_is(header, 0, b"GIF87a") | _is(header, 0, b"GIF89a"), GIF),
                         (_is(header, 0, b"\x89PNG\r\n\x1a\n"), PNG),
                         (_is(header, 0, b"\xff\xd8\xff"), JPEG)):
        code = tf.where(found, value, code)
    return code


def _size(valid, height, width):
    broken = tf.constant(BROKEN, tf.int64)
    return tf.stack([tf.where(valid, height, broken), tf.where(valid, width, broken)])


def _png_size(data):
    header = _header(data)
    return _size(_is(header, 12, b"IHDR"), _big_endian(header, 20, 4), _big_endian(header, 16, 4))


def _bmp_size(data):
    header = _header(data)
    width, height = (_little_endian(header, start, 4) for start in (18, 22))
    width, height = (tf.where(v >= 2 ** 31, v - 2 ** 32, v) for v in (width, height))  # signed
    valid = (_little_endian(header, 14, 4) >= 40) & (width > 0) & (height != 0)
    return _size(valid, tf.abs(height), width)


def _webp_size(data):
    header = _header(data)
    lossless_bits = _little_endian(header, 21, 4)
    sizes = [  # (chunk found, height, width)
        (_is(header, 12, b"VP8 ") & _is(header, 23, b"\x9d\x01\x2a"),
         _little_endian(header, 28, 2) % 2 ** 14, _little_endian(header, 26, 2) % 2 ** 14),
        (_is(header, 12, b"VP8L") & tf.equal(header[20], 0x2F),
         (lossless_bits // 2 ** 14) % 2 ** 14 + 1, lossless_bits % 2 ** 14 + 1),
        # Extended format: the canvas; an animation (flag 0x02) is refused.
        (_is(header, 12, b"VP8X") & tf.equal((header[20] // 2) % 2, 0),
         _little_endian(header, 27, 3) + 1, _little_endian(header, 24, 3) + 1),
    ]
    height = width = tf.constant(BROKEN, tf.int64)
    for found, chunk_height, chunk_width in sizes:
        height, width = tf.where(found, chunk_height, height), tf.where(found, chunk_width, width)
    return _size(tf.reduce_any([found for found, _, _ in sizes]), height, width)


def _jpeg_size(data):
    return tf.cast(tf.image.extract_jpeg_shape(data)[:2], tf.int64)


def gif_first_frame(data, max_pixels=None):
    """The GIF `data` cut after its first frame (and a trailer appended), and that frame's
    `(height, width)` (`BROKEN` for a file without a complete first frame, or, given
    `max_pixels`, one that does not end within `gif_bytes_read(max_pixels)` bytes).

    The file is a chain of blocks: the header and global color table, extensions (each a chain of
    sub-blocks: a size byte, then that many bytes), the first image descriptor, its local color
    table and its LZW data (sub-blocks again). Walking the chain one block at a time would cost a
    hostile file of one-byte sub-blocks one graph step per byte; instead every position's next
    step is computed at once and the steps are composed by repeated squaring (pointer jumping),
    so a file of n bytes costs about log2(3n) gathers of 3n positions.
    """
    read = data if max_pixels is None else tf.strings.substr(data, 0, gif_bytes_read(max_pixels))
    raw = tf.cast(tf.io.decode_raw(read, tf.uint8), tf.int32)
    count = tf.size(raw)
    padded = tf.concat([raw, tf.zeros([16], tf.int32)], 0)  # reads past the end see zeros

    def at(position):
        return tf.gather(padded, tf.clip_by_value(position, 0, count))

    def color_table(flags):
        return tf.where(flags >= 128, 3 * 2 ** (flags % 8 + 1), 0)

    # States `mode * states + position`: mode 0 at a block's first byte (an extension, 0x21, leads
    # into its sub-blocks; anything else stops), mode 1 in an extension's sub-blocks (a zero size
    # ends them), mode 2 in the image's sub-blocks (a zero size stops). Position `count` stops.
    states = count + 1
    positions = tf.range(states)
    sizes = tf.gather(padded, positions)
    step = lambda offset: tf.minimum(positions + offset, count)  # noqa: E731
    jumps = tf.concat([
        tf.where(tf.equal(sizes, 0x21), states + step(2), positions),
        tf.where(tf.equal(sizes, 0), step(1), states + step(sizes + 1)),
        tf.where(tf.equal(sizes, 0), 2 * states + positions, 2 * states + step(sizes + 1)),
    ], 0)
    rounds = tf.cast(tf.math.ceil(tf.math.log(tf.cast(3 * states, tf.float32)) / tf.math.log(2.0)), tf.int32) + 1
    jumps = tf.while_loop(lambda i, _: i < rounds, lambda i, j: (i + 1, tf.gather(j, j)), (0, jumps))[1]

    image = jumps[tf.minimum(13 + color_table(at(10)), count)] % states  # past the extensions
    lzw_start = tf.minimum(image + 10 + color_table(at(image + 9)) + 1, count)  # +1: the LZW code size
    end = jumps[2 * states + lzw_start] % states + 1  # past the zero-size terminator
    complete = tf.equal(at(image), 0x2C) & (end <= count)
    height = tf.cast(at(image + 7) + 256 * at(image + 8), tf.int64)
    width = tf.cast(at(image + 5) + 256 * at(image + 6), tf.int64)
    size = _size(complete & (height > 0) & (width > 0), height, width)
    first = tf.strings.substr(data, 0, tf.where(complete, end, 0)) + b"\x3b"
    return first, size


def gif_bytes_read(max_pixels):
    """The bytes of a GIF in which a first frame of at most `max_pixels` pixels must end: its LZW
    data takes at most 12 bits per pixel (every code gives a pixel or more), plus a megabyte of
    color tables and extensions (metadata) before it."""
    return 2 * max_pixels + 2 ** 20


def header_size(data, max_pixels=None):
    """`(bytes to decode, format code, int64 [height, width])` of one encoded image, read from its
    header without decoding its pixels. The bytes are `data`, except for a GIF: its first frame
    only (`gif_first_frame`, which with `max_pixels` reads at most `gif_bytes_read` bytes). Height and width are `BROKEN` for a header that cannot be read,
    `0` for an unknown format."""
    code = image_format(data)

    def known(function):
        def branch():
            size = function(data)
            return data, tf.reshape(size, [2])
        return branch

    def gif():
        first, size = gif_first_frame(data, max_pixels)
        return first, size

    branches = [lambda: (data, tf.zeros([2], tf.int64)), known(_jpeg_size), known(_png_size), gif,
                known(_bmp_size), known(_webp_size)]
    prepared, size = tf.switch_case(code, branches)
    return prepared, code, size


def _refuse_unless(condition, parts, after=()):
    """An assertion, run after the `after` ops, whose InvalidArgumentError message is `parts`
    (strings and scalar tensors) joined."""
    def text(part):
        if isinstance(part, str) or (tf.is_tensor(part) and part.dtype == tf.string):
            return part
        return tf.strings.as_string(part)

    with tf.control_dependencies(list(after)):
        return tf.debugging.Assert(condition, [tf.strings.join([text(part) for part in parts])], summarize=1)


def _first(bad):
    return tf.argmax(tf.cast(bad, tf.int32), output_type=tf.int32)


def check_batch_size(count, max_batch, signature_name):
    """An assertion that a request holds 1 to `max_batch` images."""
    return _refuse_unless((count >= 1) & (count <= max_batch), [
        f"{signature_name}: the request holds ", count, f" images; this model takes 1 to {max_batch} per "
        "request (max_batch, set at export: reseg export --max-batch); split larger batches"])


def check_pixels(height, width, max_pixels, signature_name, what, after=()):
    """An assertion that an image of `height` x `width` has 1 to `max_pixels` pixels; `what`
    (strings and tensors) names it in the message ("image 2 of the request is")."""
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    return _refuse_unless((height >= 1) & (width >= 1) & (height * width <= max_pixels), [
        f"{signature_name}: ", *what, " ", width, "x", height, " (width x height) = ", height * width,
        f" pixels; this model takes images of 1 to {max_pixels} pixels (max_image_pixels, set at export: "
        "reseg export --max-image-pixels); resize larger ones first"], after)


def bounded_pixels(images, max_pixels, max_batch, signature_name):
    """`(B, H, W, 3)` pixels, passed on only after the rank, batch and size checks."""
    images = tf.ensure_shape(images, [None, None, None, 3])
    shape = tf.shape(images)
    batch = check_batch_size(shape[0], max_batch, signature_name)
    size = check_pixels(shape[1], shape[2], max_pixels, signature_name, ["the images are"], after=[batch])
    with tf.control_dependencies([size]):
        return tf.identity(images)


def bounded_decode(image_bytes, max_pixels, max_batch, signature_name):
    """uint8 `(B, H, W, 3)` of a batch of encoded images, each decoded only after every image's
    header is read and checked: known format, readable size, at most `max_pixels`, one size for
    the whole batch (the answers have the images' own size), at most `max_batch` images."""
    from reseg_tf.inference import decode_image

    image_bytes = tf.ensure_shape(image_bytes, [None])
    count = tf.shape(image_bytes)[0]
    batch = check_batch_size(count, max_batch, signature_name)
    with tf.control_dependencies([batch]):
        prepared, codes, sizes = tf.map_fn(
            lambda index: header_size(image_bytes[index], max_pixels), tf.range(count),
            fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
                                 tf.TensorSpec([2], tf.int64)))
    prefix = f"{signature_name}: image "
    unknown = _first(tf.equal(codes, UNKNOWN))
    known = _refuse_unless(tf.reduce_all(codes != UNKNOWN), [
        prefix, unknown, " of the request (", tf.strings.length(image_bytes[unknown]),
        f" bytes) is not a {', '.join(FORMATS[:-1])} or {FORMATS[-1]} file"])
    broken = _first(sizes[:, 0] < 1)
    readable = _refuse_unless(tf.reduce_all(sizes >= 1), [
        prefix, broken, " of the request is a ", tf.gather(tf.constant(("", *FORMATS)), codes[broken]),
        " file whose header gives no image size this model can take (truncated or corrupt, or an "
        "animated WebP)"], after=[known])
    pixels = sizes[:, 0] * sizes[:, 1]
    largest = tf.argmax(pixels, output_type=tf.int32)
    small_enough = check_pixels(sizes[largest, 0], sizes[largest, 1], max_pixels, signature_name,
                                ["image ", largest, " of the request is"], after=[readable])
    other = _first(tf.reduce_any(sizes != sizes[0], axis=1))
    one_size = _refuse_unless(tf.reduce_all(tf.equal(sizes, sizes[0])), [
        f"{signature_name}: all images of one request must have the same height and width (the answers "
        "have the images' own size): image ", other, " is ", sizes[other, 1], "x", sizes[other, 0],
        ", image 0 is ", sizes[0, 1], "x", sizes[0, 0], " (width x height); send differently sized "
        "images in separate requests"], after=[small_enough])

    def decode(index):
        image = decode_image(prepared[index])
        as_header = _refuse_unless(tf.reduce_all(tf.equal(tf.shape(image, out_type=tf.int64)[:2], sizes[index])), [
            prefix, index, " of the request decodes to a size its header does not give"])
        with tf.control_dependencies([as_header]):
            return tf.identity(image)

    with tf.control_dependencies([one_size]):
        return tf.map_fn(decode, tf.range(count), fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

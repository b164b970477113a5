"""Fine-tuning: start a new model from the weights of a trained ReSeg model.

Layers are matched by name (every ReSeg model names its layers the same way: `block1_conv1`,
`renet_1`, `upsample_1`, `classifier`, ...). A layer is loaded when the trained model has a
layer of that name whose weights have the same shapes; otherwise it keeps its fresh
initialisation (the classifier, when the class count differs, or any layer whose width differs).
"""
from reseg_tf.model_io import load_reseg_model
from reseg_tf.models import front_end_layers


def load_matching_layers(model, source):
    """Copies weights from `source` (a model or a `.keras` path) into `model`, layer by layer.

    Returns `{"loaded": [names], "new": [(name, reason)]}` over the layers of `model` that have
    weights. Raises ValueError when no layer matches.
    """
    label = source if isinstance(source, str) else getattr(source, "name", "the model")
    if isinstance(source, str):
        source = load_reseg_model(source)
    known = {layer.name: layer for layer in source.layers}
    loaded, new = [], []
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        match = known.get(layer.name)
        if match is None:
            new.append((layer.name, "no layer of that name"))
            continue
        theirs = match.get_weights()
        shapes, their_shapes = [w.shape for w in weights], [w.shape for w in theirs]
        if shapes != their_shapes:
            new.append((layer.name, f"shapes differ: {_shapes(their_shapes)} there, {_shapes(shapes)} here"))
            continue
        layer.set_weights(theirs)
        loaded.append(layer.name)
    if not loaded:
        raise ValueError(
            f"--init-from {label}: no layer matches (by name and weight shapes) the {model.name} model "
            f"being trained ({', '.join(name for name, _ in new[:4])}, ... all differ); start from a "
            "model of the same architecture, e.g. one trained with the same --preset.")
    return {"loaded": loaded, "new": new}


def _shapes(shapes):
    return ", ".join("x".join(map(str, shape)) for shape in shapes[:2]) + (", ..." if len(shapes) > 2 else "")


def freeze_front_end(model):
    """Makes the front-end layers (as `model`'s front end names them) untrainable; returns their
    names."""
    frozen = front_end_layers(model)
    for name in frozen:
        model.get_layer(name).trainable = False
    return frozen


def describe(result, source, frozen=None):
    """The lines `reseg train --init-from` prints."""
    lines = [f"Initialised from {source}: loaded {len(result['loaded'])} layer(s): {', '.join(result['loaded'])}"]
    if result["new"]:
        lines.append(f"New (freshly initialised) layer(s): "
                     + "; ".join(f"{name} ({reason})" for name, reason in result["new"]))
    else:
        lines.append("New layer(s): none")
    if frozen is not None:
        lines.append(f"Frozen front end: {', '.join(frozen) or 'none (this model has no front-end layers)'}")
    return lines

"""Runs Hub loading in a fresh process for tests/test_hub.py: `huggingface_hub` reads
HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported (Keras imports it), so each test sets them in
the environment of this process. Prints one JSON line of what it saw.

    python hub_worker.py NAME OTHER_NAME MISSING_NAME IMAGES.npy IMAGE_FILE DATA_DIR OUTPUT_DIR RUN_DIR

It loads NAME (load_pretrained, Keras' own hf:// loader), OTHER_NAME (load_reseg_model), tries
MISSING_NAME, a push without a token and one offline, predicts IMAGE_FILE with `reseg predict --model NAME`
and fine-tunes on DATA_DIR with `reseg train --init-from OTHER_NAME` (into OUTPUT_DIR/tuned).
"""
import json
import sys


def _error(call):
    try:
        call()
    except Exception as error:  # the test checks the type and message
        return [type(error).__name__, str(error)]
    return None


def main(name, other, missing, images_path, image_file, data_dir, output_dir, run_dir):
    import keras
    import numpy as np

    import reseg_tf
    from reseg_tf import cli
    from reseg_tf.model_io import load_reseg_model

    images = np.load(images_path)
    model = reseg_tf.load_pretrained(name)
    by_keras = keras.saving.load_model(name, compile=False)  # Keras' own hf:// loader
    pinned = load_reseg_model(other)
    return {
        "probabilities": model.predict(images, verbose=0).tolist(),
        "keras_probabilities": by_keras.predict(images, verbose=0).tolist(),
        "pinned_probabilities": pinned.predict(images, verbose=0).tolist(),
        "training_scale": model.training_scale, "revision": model.hub_revision,
        "pinned_revision": pinned.hub_revision,
        "missing": _error(lambda: load_reseg_model(missing)),
        "push_without_token": _error(lambda: reseg_tf.push(run_dir, "hf://someone/new", output=output_dir + "/kept")),
        "push_offline": _error(lambda: reseg_tf.push(run_dir, "hf://someone/new", token="hf_not_checked",
                                                     output=output_dir + "/kept_offline")),
        "predict_exit": cli.main(["predict", image_file, "--model", name, "--output", output_dir + "/predicted"]),
        "train_exit": cli.main([
            "train", "--preset", "demo", "--dataset", "folder", "--data-dir", data_dir, "--num-classes", "3",
            "--output", output_dir + "/tuned", "--epochs", "1", "--image-size", "24", "24", "--batch-size", "2",
            "--steps-per-epoch", "1", "--no-augment", "--init-from", other]),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))

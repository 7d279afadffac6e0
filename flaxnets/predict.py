"""Top-K ImageNet classes of images with a checkpoint's own eval transform.

    python -m flaxnets.predict resnet50 resnet50-11ad3fa6.pth cat.jpg dog.png
    python -m flaxnets.predict resnet50 resnet50.msgpack cat.jpg --weights IMAGENET1K_V1 --top 3

CHECKPOINT is a torchvision-style ``.pth``/``.safetensors`` state_dict (read through
``flaxnets.load_torch_checkpoint`` and converted strictly) or a Flax ``.msgpack`` written by
``python -m flaxnets.convert`` (checked strictly against the model's layout). Each image is
preprocessed with ``flaxnets.eval_transform(MODEL, --weights)`` (default: the model's DEFAULT
weights, e.g. resize 232 / crop 224 for resnet50's IMAGENET1K_V2), run through the model in
float32 eval mode, and its top-K softmax probabilities are printed with torchvision's ImageNet
class names. Exit status 2 with a one-line error for an unknown model or weights name, a
missing or unreadable checkpoint, or a missing or non-image file.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flaxnets.predict", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="registered model name, e.g. resnet50 (see flaxnets.list_models())")
    p.add_argument("checkpoint", help="torchvision .pth/.safetensors state_dict, or a Flax .msgpack")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (anything PIL reads)")
    p.add_argument("--weights", default="DEFAULT",
                   help="whose eval transform to use: DEFAULT or a weights name such as IMAGENET1K_V1 "
                        "(see flaxnets.list_weights(MODEL))")
    p.add_argument("--top", type=int, default=5, help="how many classes to print per image")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    return p


def load_variables(name: str, path: str) -> dict:
    """Flax variables for model `name` from a torch checkpoint or a Flax msgpack file (strict)."""
    from flaxnets.convert import from_torch_state_dict, load_torch_checkpoint, to_numpy_state_dict

    if path.endswith(".msgpack"):
        from flaxnets.convert.__main__ import read_flax_variables

        # Through the torch layout and back: every leaf checked for name and shape, dtypes normalised.
        return from_torch_state_dict(name, to_numpy_state_dict(name, read_flax_variables(path)))
    return from_torch_state_dict(name, load_torch_checkpoint(path))


def load_image(path: str, transform) -> np.ndarray:
    """One image file through `transform`; a missing (FileNotFoundError), truncated or non-image file
    (ValueError) raises naming it."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            return transform(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def predict(model, variables, images: np.ndarray, top: int = 5, batch_size: int = 16):
    """(indices (N, top) int, probabilities (N, top) float64) of NHWC float32 `images`, eval mode."""
    import jax

    apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
    logits = np.concatenate([np.asarray(apply(variables, images[i:i + batch_size]), np.float64)
                             for i in range(0, len(images), batch_size)])
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :top]
    return idx, np.take_along_axis(probs, idx, axis=1)


def run(args) -> str:
    import flaxnets

    flaxnets.MODELS.get(args.model)  # unknown names fail before any file is read
    if args.top < 1 or args.batch_size < 1:
        raise ValueError("--top and --batch-size must be positive")
    transform = flaxnets.eval_transform(args.model, args.weights)
    info = flaxnets.weights_info(args.model, args.weights)
    images = np.stack([load_image(p, transform) for p in args.images])
    variables = load_variables(args.model, args.checkpoint)
    model = flaxnets.create_model(args.model)
    idx, probs = predict(model, variables, images, min(args.top, 1000), args.batch_size)
    classes = flaxnets.imagenet_classes()
    lines = [f"# {args.model}, eval transform of {info['weights']}: resize {transform.resize_size} "
             f"({transform.interpolation}), center crop {transform.crop_size}"]
    for path, row_i, row_p in zip(args.images, idx, probs):
        lines.append(path)
        lines += [f"  {r + 1:2d}. {p:.6f}  {i:4d}  {classes[i]}" for r, (i, p) in enumerate(zip(row_i, row_p))]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(run(args))
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

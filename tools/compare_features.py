"""Development check (not run by CI, which has no torchvision): flaxnets' features_only maps
against torchvision's `create_feature_extractor` (same module paths, on torchvision's own model
with the torchref checkpoint loaded strictly) and, for the timm-layout families, against timm's
`features_only=True` model (its FeatureListNet keys mapped, loaded strictly), float32 at 224.

    python tools/compare_features.py [FIRST_MODEL]     # through the CPU shim (TORCHVISION_SHIM_DIR)
"""
import os
import sys

sys.path.insert(0, os.environ.get("TORCHVISION_SHIM_DIR", "/work/shared/tools"))
from torchvision_shim import torchvision  # noqa: E402
import timm, torch, numpy as np, jax, jax.numpy as jnp
from torchvision.models.feature_extraction import create_feature_extractor
import flaxnets, torchref
jax.config.update("jax_default_matmul_precision", "highest")
torch.backends.cudnn.allow_tf32 = False
TV = ["resnet50", "regnet_y_400mf", "vgg11_bn", "alexnet", "squeezenet1_1", "googlenet", "inception_v3", "densenet121",
      "mnasnet0_5", "shufflenet_v2_x1_0", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny",
      "swin_t", "swin_v2_t", "maxvit_t", "vit_b_32"]
TIMM = ["ese_vovnet19b_dw", "darknet53", "mobilenetv1_100", "semnasnet_100"]
def rel(a, b): return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
START = sys.argv[1] if len(sys.argv) > 1 else None
for name in (TV + TIMM)[(TV + TIMM).index(START) if START else 0:]:
    torch.manual_seed(0)
    ref = torchref.create_model(name).eval()
    with torch.no_grad():
        for p in ref.parameters(): p.add_(0.01 * torch.randn_like(p))
    sd = ref.state_dict()
    info = flaxnets.feature_info(name)
    size = 224
    x = torch.randn(2, 3, size, size)
    if name in TIMM:
        real = timm.create_model(name, features_only=True, pretrained=False).eval()
        import re
        want = set(real.state_dict())
        sd_t = {}
        for k, v in sd.items():
            k2 = k if k in want else re.sub(r"^(stages|stem)\.(\w+)", r"\1_\2", k)
            if k2 in want:
                sd_t[k2] = v
        real.load_state_dict(sd_t, strict=True)  # every timm feature-model key from the torchref checkpoint
        with torch.no_grad(): outs = real(x)
        mods = real.feature_info.module_name()
        outs = dict(zip([m.replace("_", ".") if False else m for m in mods], outs))
        src = "timm features_only"
    else:
        kw = {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}
        real = getattr(torchvision.models, name)(**kw).eval()
        from collections import OrderedDict
        sd2 = OrderedDict((k, v) for k, v in sd.items() if not k.startswith(("aux", "AuxLogits")))
        sd2._metadata = real.state_dict()._metadata  # (torchvision's MNASNet checks its version)
        real.load_state_dict(sd2, strict=True)
        ext = create_feature_extractor(real, return_nodes={d["module"]: d["module"] for d in info})
        with torch.no_grad(): outs = ext(x)
        src = "create_feature_extractor"
    fm = flaxnets.create_model(name, features_only=True)
    v = flaxnets.from_torch_state_dict(name, sd, features_only=True)
    feats = jax.jit(fm.apply)(v, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    errs = []
    for d, f in zip(info, feats):
        key = d["module"]
        if name in TIMM:
            key = [m for m in outs][info.index(d)]
            assert key == d["module"] or key.replace("stem.conv1", "stem.conv1") == d["module"], (key, d["module"])
        t = outs[key].numpy()
        if name.startswith("vit"):
            t = t[:, 1:].reshape(f.shape)
        elif t.shape != f.shape:
            t = t.transpose(0, 2, 3, 1)
        errs.append(rel(np.asarray(f), t))
    print(f"{name:20s} vs {src:25s} {len(errs)} maps, worst rel err {max(errs):.2e}", flush=True)

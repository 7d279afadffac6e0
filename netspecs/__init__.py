"""Architecture tables shared by `flaxnets` (Flax) and `torchref` (PyTorch).

Each family's frozen dataclass config and named variant table lives here, in pure Python (and
numpy where a design rule needs torch's float32 arithmetic), so both implementations read the
same numbers without importing each other's framework: importing `netspecs` imports neither
jax, flax nor torch.
"""

# Every family, by module name: `flaxnets.<family>` and `torchref.<family>` register its models
# when their package is imported (`netspecs.registry.import_families`).
FAMILIES = (
    "regnet", "resnet", "vgg", "alexnet", "squeezenet", "lenet", "googlenet", "inception",
    "densenet", "mobilenetv1", "mobilenetv2", "mobilenetv3", "mnasnet", "shufflenetv2",
    "efficientnet",
    "convnext",
    "maxvit",
    "darknet",
    "vit",
    "vovnet",
    "timm_mobilenetv1",
    "swin",
    "semnasnet",
)

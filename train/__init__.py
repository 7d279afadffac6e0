"""Training flaxnets classifiers with optax: `python -m train.main --help`.

Modules: `config` (TrainConfig + CLI), `data`/`digits` (input pipelines), `optim` (SGD with
torch semantics, AdamW, schedule, loss, EMA), `state` (TrainState), `steps` (pure, sharded
train/eval steps), `checkpoint` (orbax), `logging` (TensorBoard + tqdm), `main` (the CLI).
"""

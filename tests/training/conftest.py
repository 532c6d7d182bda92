"""The tiny training config the training tests share, and a trained model's weights."""

from arithinterp.checkpoints import load_model
from arithinterp.models import ModelSpec
from arithinterp.tasks import TaskSpec
from arithinterp.training.config import TrainConfig

TINY = TrainConfig(
    task=TaskSpec(digits_a=2, digits_b=2, format="reversed"),
    model=ModelSpec(n_layers=1, d_model=32, n_heads=2, d_mlp=64),
    n_train=600, n_test=64, batch_size=32, max_steps=24, eval_every=5, eval_size=32,
    checkpoint_every=7, warmup_steps=4, target_accuracy=None,
)


def trained_weights(path):
    return load_model(path).model.state_dict()

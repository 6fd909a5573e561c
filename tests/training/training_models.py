"""Tiny Flax CNNs for fast trainer tests (conv + BatchNorm + dropout + dense)."""
import flax.linen as nn
import jax.numpy as jnp


class TinyCNN(nn.Module):
    """Conv(8) -> BatchNorm -> ReLU -> global mean pool -> Dropout -> Dense: NHWC -> logits."""
    num_classes: int = 10
    features: int = 8
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


class PlainCNN(nn.Module):
    """Conv -> ReLU -> pool -> Dense, no BatchNorm and no dropout (per-example independent)."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


class DigitsCNN(nn.Module):
    """Small CNN for 8x8x1 digits."""
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(16, (3, 3))(x)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = nn.relu(x)
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)

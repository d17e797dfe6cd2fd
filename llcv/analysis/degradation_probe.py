"""How well a network's deep features tell degradations apart: DCPT's pre-experiment.

Features of labelled LQ crops (each crop under one degradation) are pooled per layer, then a
k-nearest-neighbour classifier (the paper's, k = 5) or a linear probe (multinomial logistic
regression) is cross-validated over stratified folds; the result is the accuracy per fold.
Features are standardised with the training fold's statistics only.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from llcv.data.sampler import SampleKey
from llcv.errors import OptionError
from llcv.models.deep_features import capture_features, ordered
from llcv.utils import luma, module_modes

POOLS = ("meanstd", "mean", "flatten")
METHODS = ("knn", "linear")


def labelled_crops(dataset: Dataset, count: int, seed: int = 0,
                   progress: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """``count`` LQ crops of a training-phase labelled dataset (random image, crop and
    degradation per sample, fixed by ``seed``) and their labels."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in tqdm(range(count), desc="degrade", unit="crop", disable=not progress,
                  dynamic_ncols=True):
        sample = dataset[SampleKey(i % len(dataset), int(rng.integers(2**62)))]
        images.append(sample["lq"])
        labels.append(sample["label"])
    return torch.stack(images), np.asarray(labels)


def match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB crops as the network takes them: unchanged, or as BT.601 luma for one channel."""
    if channels == images.shape[1]:
        return images
    if channels == 1 and images.shape[1] == 3:
        return luma(images)
    raise OptionError(f"--network: takes {channels}-channel images; the probe set has "
                      f"{images.shape[1]} channels")


def pool(feature: torch.Tensor, how: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, D): channel means, means and standard deviations, or everything."""
    if how == "mean":
        return feature.mean(dim=(-2, -1))
    if how == "meanstd":
        return torch.cat([feature.mean(dim=(-2, -1)), feature.std(dim=(-2, -1))], dim=1)
    if how == "flatten":
        return feature.flatten(1)
    raise OptionError(f"--pool: expected one of {', '.join(POOLS)}, got {how!r}")


@torch.no_grad()
def extract_features(model: nn.Module, layers: Sequence[str], images: torch.Tensor,
                     how: str = "meanstd", batch_size: int = 16,
                     device: torch.device | str = "cpu", progress: bool = True) -> np.ndarray:
    """Pooled features of ``layers`` for every image, concatenated per image (float64)."""
    rows = []
    starts = range(0, len(images), batch_size)
    with module_modes(model, False), capture_features(model, layers) as store:
        for start in tqdm(starts, desc="features", unit="batch", disable=not progress,
                          dynamic_ncols=True):
            store.clear()
            model(images[start:start + batch_size].to(device))
            maps = ordered(store, layers)
            rows.append(torch.cat([pool(f.float(), how) for f in maps], 1).double().cpu())
    return torch.cat(rows).numpy()


def stratified_folds(labels: np.ndarray, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test indices of each of ``folds`` folds, every class spread evenly over them."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        for j, index in enumerate(members):
            parts[(offset + j) % folds].append(int(index))
        offset += len(members)
    return [np.sort(np.asarray(p, dtype=int)) for p in parts]


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets scaled by the training set's per-dimension mean and std."""
    mean, std = train.mean(0), train.std(0)
    std[std < 1e-12] = 1.0
    return torch.from_numpy((train - mean) / std), torch.from_numpy((test - mean) / std)


def knn_predict(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
                k: int = 5) -> np.ndarray:
    """Majority vote of the ``k`` nearest training points (Euclidean); a tie goes to the
    tied class met first among the nearest."""
    order = torch.cdist(test_x, train_x).argsort(dim=1)[:, :k].numpy()
    votes = train_y[order]
    out = np.empty(len(votes), dtype=train_y.dtype)
    for i, row in enumerate(votes):
        counts = {c: int((row == c).sum()) for c in row}
        best = max(counts.values())
        out[i] = next(c for c in row if counts[c] == best)
    return out


def linear_predict(train_x: torch.Tensor, train_y: np.ndarray, test_x: torch.Tensor,
                   weight_decay: float = 1e-2, steps: int = 100) -> np.ndarray:
    """Multinomial logistic regression (full-batch L-BFGS, L2 penalty) fitted on the training
    fold; deterministic."""
    classes = np.unique(train_y)
    target = torch.from_numpy(np.searchsorted(classes, train_y))
    layer = nn.Linear(train_x.shape[1], len(classes), dtype=torch.float64)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(layer(train_x), target) \
            + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return classes[layer(test_x).argmax(1).numpy()]


def cross_validate(features: np.ndarray, labels: np.ndarray, method: str = "knn",
                   folds: int = 5, k: int = 5, seed: int = 0) -> list[float]:
    """Accuracy on each held-out fold of a classifier fitted on the other folds."""
    if method not in METHODS:
        raise OptionError(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    if folds < 2 or folds > len(labels):
        raise OptionError(f"--folds: need 2 <= folds <= {len(labels)} samples, got {folds}")
    predict: Callable = (lambda a, b, c: knn_predict(a, b, c, k)) if method == "knn" \
        else linear_predict
    scores = []
    for test in stratified_folds(labels, folds, seed):
        train = np.setdiff1d(np.arange(len(labels)), test)
        train_x, test_x = standardise(features[train], features[test])
        scores.append(float((predict(train_x, labels[train], test_x) == labels[test]).mean()))
    return scores

"""Diversity and privacy measures of a synthetic set against real train and holdout sets.

Everything but the projection membership takes feature vectors ``[N, D]`` (Inception
pool3, a classifier's features or flattened pixels) and returns plain numbers, so a
datasheet can put each beside the value it would have if the synthetic images were
fresh draws from the real distribution (the holdout set scored as if it were synthetic).

* **Density / coverage** (Naeem et al. 2020, k=5): a real sample's radius is the
  distance to its k-th nearest real neighbour (itself excluded).
  density = sum over fakes of the number of real balls holding it / (k * #fakes);
  coverage = share of real samples whose ball holds at least one fake. Same
  distribution: density ~1, coverage ~1 - 2^-k (0.969 at k=5) when the sets are
  the same size.
* **Authenticity** (Alaa et al. 2022): a synthetic sample is authentic when it is
  farther from its nearest real sample r than r is from r's own nearest real
  neighbour. Copies of training images score 0; fresh samples about 1/2 or more.
* **Distance to closest record** (DCR): each synthetic sample's distance to its
  nearest training sample, against the same for holdout samples; the ratio of the
  medians is ~1 without copying and well below 1 when the generator reproduces its
  training images.
* **NNDR**: nearest over second-nearest training distance per synthetic sample; the
  share above 0.5 (a copy has a ratio near 0).
* **Membership inference** (a distance attack): training and holdout images are
  scored by minus their distance to the nearest synthetic sample; the attack's
  ROC AUC at telling training from holdout is 0.5 when nothing leaks, 1 when the
  synthetic set gives the training set away.
* **Projection membership** (`projection_membership`): training and holdout images are
  projected into the generator itself (jaxgen/stylegan2/projector.py) and scored by their
  reconstruction MSE; a generator that reconstructs its training faces much better than
  held-out faces of the same kind has memorised them: the ROC AUC of "train reconstructs
  better" is 0.5 without leak, 1 for full leak. It optimises and scores pixels only by
  default: D saw the training images too, and neither its features nor its opinion should
  make them look memorised by G. `evaluate.py datasheet --checkpoint RUN
  --projection_steps N` adds it to the datasheet (64 training and 64 holdout images).

Distances are Euclidean, in float64, computed in row blocks (memory O(block * N)).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import numpy as np
import scipy.stats

from jaxgen.errors import ConfigError
from jaxgen.stylegan2.projector import ProjectConfig, project_many
from jaxgen.utils.logger import logger


def _as_feats(x, name: str) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name}: features must be a non-empty [N, D] array, got shape {a.shape}")
    return a


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, D], b [M, D] -> Euclidean distances [N, M] (float64, round-off clipped at 0)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def nearest(a, b, k: int = 1, exclude_self: bool = False, block: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of b for every row of a: (distances [N, k] ascending, indices [N, k]).

    exclude_self: a and b are the same set; a row is not its own neighbour. The search
    uses |a|^2 + |b|^2 - 2 a.b; the returned distances are recomputed as |a - b|."""
    a, b = _as_feats(a, "a"), _as_feats(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    if b.shape[0] < k + int(exclude_self):
        raise ValueError(f"need more than {k} samples to find {k} neighbours, got {b.shape[0]}")
    dist, idx = [], []
    for s in range(0, a.shape[0], block):
        d = pairwise_distances(a[s:s + block], b)
        if exclude_self:
            rows = np.arange(d.shape[0])
            d[rows, rows + s] = np.inf
        i = np.argsort(d, axis=1, kind="stable")[:, :k]
        idx.append(i)
        # exact |a - b| for the chosen ones: the expansion leaves ~1e-7 where a copy has 0
        dist.append(np.linalg.norm(a[s:s + block, None, :] - b[i], axis=-1))
    return np.concatenate(dist), np.concatenate(idx)


def density_coverage(real, fake, k: int = 5) -> Dict[str, float]:
    """Naeem et al. 2020 density and coverage of `fake` [M, D] against `real` [N, D]."""
    real, fake = _as_feats(real, "real"), _as_feats(fake, "fake")
    radius = nearest(real, real, k, exclude_self=True)[0][:, -1]        # [N]
    inside = np.zeros(fake.shape[0])
    covered = np.zeros(real.shape[0], bool)
    for s in range(0, fake.shape[0], 1024):
        hit = pairwise_distances(fake[s:s + 1024], real) <= radius[None, :]   # [m, N]
        inside[s:s + 1024] = hit.sum(1)
        covered |= hit.any(0)
    return dict(density=float(inside.sum() / (k * fake.shape[0])), coverage=float(covered.mean()))


def authenticity(train, synthetic) -> float:
    """Share of synthetic samples farther from their nearest training sample r than r is
    from its own nearest training neighbour (Alaa et al. 2022)."""
    train = _as_feats(train, "train")
    d_syn, i_syn = nearest(synthetic, train, 1)
    d_train = nearest(train, train, 1, exclude_self=True)[0][:, 0]
    return float(np.mean(d_syn[:, 0] > d_train[i_syn[:, 0]]))


def dcr(train, synthetic, holdout) -> Dict[str, float]:
    """Distance to closest training record: medians and 5th percentiles for synthetic and
    holdout samples, and ratio = synthetic median / holdout median (~1: no copying)."""
    d_syn = nearest(synthetic, train, 1)[0][:, 0]
    d_hold = nearest(holdout, train, 1)[0][:, 0]
    med_s, med_h = float(np.median(d_syn)), float(np.median(d_hold))
    return dict(synthetic_median=med_s, holdout_median=med_h,
                synthetic_p5=float(np.percentile(d_syn, 5)), holdout_p5=float(np.percentile(d_hold, 5)),
                ratio=med_s / med_h if med_h > 0 else float("inf"))


def nndr_share(train, synthetic, above: float = 0.5) -> float:
    """Share of synthetic samples whose nearest / second-nearest training distance > `above`."""
    d = nearest(synthetic, train, 2)[0]
    ratio = np.where(d[:, 1] > 0, d[:, 0] / np.maximum(d[:, 1], 1e-300), 0.0)
    return float(np.mean(ratio > above))


def roc_auc(pos_scores, neg_scores) -> float:
    """P(score of a positive > score of a negative), ties counted 1/2 (Mann-Whitney U)."""
    pos, neg = np.asarray(pos_scores, np.float64), np.asarray(neg_scores, np.float64)
    ranks = scipy.stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def membership_auc(train, holdout, synthetic) -> float:
    """AUC of the distance attack telling training from holdout images by their distance
    to the nearest synthetic sample (closer = member); 0.5 = nothing leaks."""
    d_train = nearest(train, synthetic, 1)[0][:, 0]
    d_hold = nearest(holdout, synthetic, 1)[0][:, 0]
    return roc_auc(-d_train, -d_hold)


def privacy_report(train, holdout, synthetic) -> Dict[str, object]:
    """The privacy measures above for `synthetic`, authenticity and NNDR beside their value
    for `holdout` scored as if it were synthetic (what fresh draws from the real distribution
    give). Density/coverage are diversity measures: call density_coverage for them."""
    out = {}
    for name, s in (("synthetic", synthetic), ("holdout_as_synthetic", holdout)):
        out[name] = dict(authenticity=authenticity(train, s), nndr_above_0_5=nndr_share(train, s))
    out["dcr"] = dcr(train, synthetic, holdout)
    out["membership_auc"] = membership_auc(train, holdout, synthetic)
    return out


# ---------------------------------------------------------------------------------------------
# Projection membership: does G reconstruct its training images better than held-out ones?

def projection_membership(run, train_images, holdout_images, steps: int = 300, train_labels=None,
                          holdout_labels=None, cfg: Optional[ProjectConfig] = None,
                          inception: Optional[Tuple[Any, Any]] = None) -> Dict[str, Any]:
    """Project both sets (images [N, H, W, C], see projector.fit_targets) into `run`'s (a
    StyleGAN2 jaxgen.runs.Run) generator and score each image by its reconstruction's pixel MSE.
    Returns {'auc': P(a training image reconstructs better than a holdout one), ties 1/2 (0.5 =
    no leak, 1 = the training set is given away), 'train_mse' / 'holdout_mse' per image, their
    medians, steps, w_plus, features}.

    The default cfg optimises pixels only (d_weight 0): the discriminator saw the training
    images too, and a loss in its features could reconstruct them better because D (which is
    not released) remembers them, not G; the Inception (trained elsewhere) may be added
    (inception: (FID Inception, its variables), with cfg.inception_weight > 0)."""
    cfg = dataclasses.replace(cfg or ProjectConfig(d_weight=0.0), steps=int(steps))
    logger.info(f"projection membership: {len(train_images)} training and {len(holdout_images)} holdout "
                f"images, {cfg.steps} steps each")
    tr = project_many(run, train_images, cfg, train_labels, inception)
    ho = project_many(run, holdout_images, cfg, holdout_labels, inception)
    return dict(auc=roc_auc(-tr.mse, -ho.mse), train_median_mse=float(np.median(tr.mse)),
                holdout_median_mse=float(np.median(ho.mse)), train_mse=tr.mse.tolist(),
                holdout_mse=ho.mse.tolist(), steps=cfg.steps, w_plus=cfg.w_plus, features=list(tr.features),
                score="pixel MSE of the projection (images in [-1, 1]); lower = reconstructs better")


def datasheet_membership(run, train, holdout, steps: int, max_images: int = 64,
                         config: Optional[ProjectConfig] = None) -> Dict[str, Any]:
    """projection_membership on up to `max_images` evenly spaced images of each ImageDataset
    (train: what G saw, holdout: what it never saw); a conditional run gets each image's class
    by name. The datasheet's 'projection membership' row (config: other ProjectConfig settings)."""
    def pick(ds):
        idx = np.unique(np.linspace(0, len(ds) - 1, min(max_images, len(ds))).round().astype(int))
        if not run.model.c_dim:
            return ds.images[idx], None
        names = [ds.class_names[j] for j in np.asarray(ds.labels)[idx]]
        missing = sorted(set(names) - set(run.class_names))
        if missing:
            raise ConfigError(f"projection: classes {missing} are not among {run.path}'s "
                              f"{list(run.class_names)}; give the folders the generator was trained on")
        return ds.images[idx], [run.class_names.index(n) for n in names]
    (tr, tl), (ho, hl) = pick(train), pick(holdout)
    out = projection_membership(run, tr, ho, steps, tl, hl, cfg=config)
    return dict(out, run=str(run.path), images=dict(train=len(tr), holdout=len(ho)))

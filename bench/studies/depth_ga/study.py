"""Depth-track study helpers (issue 27 item 6). Throw-away study script, kept with its results (results.jsonl) for the RESULTS.md table; outputs go under runs/depth_study/.

  python bench/studies/depth_ga/study.py sample RUN OUT SEED [N]   # N/class samples of a DCGAN run, z ~ N(0, I)
  python bench/studies/depth_ga/study.py xgb FOLDER SEED            # XGBoost on FOLDER, tested on the real depth faces
  python bench/studies/depth_ga/study.py znorm FOLDER               # |z| / sqrt(z_dim) of an evolve export's latents
"""
import json, pathlib, sys
import numpy as np

TEST = "data/demo_depth_test_32"


def ensure_test():
    from jaxgen.data import load_dataset
    load_dataset(dict(source="depth_demo", path=TEST, resolution=32, channels=1, num_per_class=64,
                      seed=1, cache_dir=""))


def sample(run_path, out, seed, n=64):
    import jax
    from PIL import Image
    from jaxgen.runs import open_run, GENERATOR_KINDS
    from jaxgen.workflows.compare import _generate_from_run
    run = open_run(run_path, kinds=GENERATOR_KINDS)
    names = list(run.class_names)
    labels = np.repeat(np.arange(len(names)), n)
    imgs = _generate_from_run(run_path, labels, names, 32, 1, int(seed))
    out = pathlib.Path(out)
    for j, (im, y) in enumerate(zip(imgs, labels)):
        d = out / names[y]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im[..., 0]).save(d / f"{names[y]}_{j:05d}.png")


def xgb(folder, seed):
    from jaxgen.features.xgb import synthetic_to_real_xgb
    ensure_test()
    r = synthetic_to_real_xgb(folder, TEST, 32, 1, seed=int(seed), cache_dir="", verbose=False)
    print(json.dumps(dict(folder=str(folder), seed=int(seed), accuracy=r["accuracy"], num_train=r["num_train"])))


def znorm(folder):
    zs = [np.load(p) for p in sorted(pathlib.Path(folder, "latents").rglob("*.npy"))]
    z = np.stack(zs).reshape(len(zs), -1)
    r = np.linalg.norm(z, axis=1) / np.sqrt(z.shape[1])
    print(json.dumps(dict(folder=str(folder), n=len(zs), rms_mean=float(r.mean()), rms_min=float(r.min()),
                          rms_max=float(r.max()))))




def filtered(run_path, out, seed, n=64, pool=8):
    """n/class of a DCGAN run's samples that the real-trained classifier puts in their class
    (drawn from a pool of pool*n per class, z ~ N(0, I)): the class term as a pure filter."""
    import jax
    from PIL import Image
    from jaxgen.runs import open_run, GENERATOR_KINDS
    from jaxgen.workflows.compare import _generate_from_run
    from jaxgen.evolve.terms import _classifier_probs
    n, pool = int(n), int(pool)
    run = open_run(run_path, kinds=GENERATOR_KINDS)
    clf = open_run("runs/depth_cls_tiny", kinds=("classifier",))
    names = list(run.class_names)
    labels = np.repeat(np.arange(len(names)), n * pool)
    imgs = _generate_from_run(run_path, labels, names, 32, 1, int(seed))
    p = np.asarray(_classifier_probs(clf.model, clf.variables, imgs.astype(np.float32) / 127.5 - 1,
                                     clf.resolution, clf.channels))
    cls = list(clf.class_names)
    out = pathlib.Path(out)
    for k, c in enumerate(names):
        idx = np.where((labels == k) & (p.argmax(1) == cls.index(c)))[0][:n]
        d = out / c
        d.mkdir(parents=True, exist_ok=True)
        for j in idx:
            Image.fromarray(imgs[j][..., 0]).save(d / f"{c}_{j:05d}.png")
        print(c, len(idx))


if __name__ == "__main__":
    cmd, *a = sys.argv[1:]
    globals()[cmd](*a)

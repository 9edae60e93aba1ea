"""Score generated images against real ones (FID, KID, IS, precision/recall, SSIM, PSNR).

  python evaluate.py --checkpoint runs/acne_tiny --real data/demo_acne --feature_net random_inception
  python evaluate.py --checkpoint runs/acne --real data/acne \\
      --inception_weights weights/pt_inception-2015-12-05-6726825d.pth --num_fakes 50000

  # classifier protocol (e.g. trained on synthetic, tested on real):
  python evaluate.py --classifier runs/cls_synthetic,runs/cls_real --test data/demo_acne_test

  # the utility benchmark: the same classifier trained on real, on synthetic (same count per
  # class) and on both, 3 seeds each, all tested on held-out real (jaxgen/classifiers/utility.py):
  python evaluate.py --utility --real_train data/demo_acne --synthetic runs/pipeline/synthetic \
      --test data/demo_acne_test --classifier_config configs/acne_classifier.py:tiny --out runs/utility
  #   add --synthetic_multiple 1,4,16 (arms on 4x, 16x the real count) and --teacher_arm (teacher labels)

  # a datasheet for a synthetic folder (fidelity, diversity, privacy, identity; each beside the
  # holdout's value; jaxgen/metrics/datasheet.py):
  python evaluate.py --datasheet --synthetic runs/pipeline/synthetic --real data/demo_acne \
      --holdout data/demo_acne_test --feature_net random_inception --identity pixel --out runs/sheet
  # ... and fidelity in the features of a classifier trained on the real faces (and dlib's):
  #     add --feature_classifier runs/pipeline/cls_real

  # one table across generators and baselines (jaxgen/workflows/compare.py, configs/depth_compare.py):
  python evaluate.py --compare configs/depth_compare.py:tiny --out runs/depth_compare

See jaxgen/metrics/evaluate.py for all options. Writes metrics.json and metrics.md
(or, for classifiers, report.json/.md, confusion_matrix.png, and comparison.md;
for --compare, comparison.md/.json and samples*.png; --inception_weights and
--feature_net override the compare config's) into --out, by default a folder
beside the model (runs/acne_tiny -> runs/acne_tiny_eval). An --out that holds
files evaluate did not write is refused; bad input stops with one line, exit 2.
"""
from absl import flags, logging
from ml_collections import config_flags

from jaxgen.classifiers.evaluate import evaluate_classifiers
from jaxgen.classifiers.utility import parse_multiples, run_utility
from jaxgen.cli import run_absl, use_compile_cache
from jaxgen.errors import ConfigError
from jaxgen.metrics.datasheet import datasheet_for_folders
from jaxgen.metrics.evaluate import run
from jaxgen.workflows.compare import compare_from_config

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "", "Training workdir, networks checkpoint or official .pkl.")
flags.DEFINE_bool("best", False, "Use the workdir's best-FID checkpoint instead of the latest.")
flags.DEFINE_string("fakes", "", "Instead of --checkpoint: a folder of generated images.")
flags.DEFINE_string("real", "", "Folder of real images (class sub-folders).")
flags.DEFINE_list("metrics", ["fid", "kid", "is", "pr", "ssim", "psnr"], "Metrics to compute.")
flags.DEFINE_integer("num_fakes", 10000, "Generated images to score.")
flags.DEFINE_float("psi", 1.0, "Truncation psi for generation.")
flags.DEFINE_integer("seed", 0, "Seed of the generated latents.")
flags.DEFINE_string("inception_weights", "", "Path to pt_inception-2015-12-05-6726825d.pth.")
flags.DEFINE_string("feature_net", "", "Fallback features without Inception weights: random_inception[:seed].")
flags.DEFINE_string("out", "", "Output directory (default: beside the model or fakes folder, "
                    "<name>_eval; never inside it).")
flags.DEFINE_string("cache_dir", "data/.metric_cache", "Cache for real-image features ('' = off).")
flags.DEFINE_list("classifier", [], "Classifier workdir(s) to evaluate on --test.")
flags.DEFINE_string("test", "", "Labelled test folder for --classifier (e.g. held-out real images).")
flags.DEFINE_bool("utility", False, "Run the utility benchmark (synthetic-train / real-test).")
flags.DEFINE_string("real_train", "", "--utility: the real training images (class sub-folders).")
flags.DEFINE_string("synthetic", "", "--utility: the synthetic dataset (the same class sub-folders).")
flags.DEFINE_string("classifier_config", "configs/acne_classifier.py:tiny",
                    "--utility: classifier config (path[:variants]).")
flags.DEFINE_list("classifier_set", [], "--utility: classifier config overrides a.b=value.")
flags.DEFINE_integer("seeds", 3, "--utility: classifier seeds per arm.")
flags.DEFINE_list("synthetic_multiple", ["1"], "--utility: synthetic arms trained on m x the real images per "
                  "class, e.g. 1,4,16 (1 is the standard 'synthetic' arm).")
flags.DEFINE_bool("teacher_arm", False, "--utility: also train on the 1x synthetic images with the teacher "
                  "labels (teacher_probs) of the export's metadata.jsonl (export with --label_by <classifier run>).")
flags.DEFINE_integer("resolution", 0, "--utility, --datasheet: image size (0 = the classifier config's; the real images' own).")
flags.DEFINE_bool("datasheet", False, "Write a datasheet for --synthetic against --real and --holdout.")
flags.DEFINE_string("holdout", "", "--datasheet: real images the generator never saw (class sub-folders).")
flags.DEFINE_enum("identity", "dlib", ["dlib", "pixel", "none"],
                  "--datasheet: identity model (pixel is a near-copy check, not an identity model).")
flags.DEFINE_float("identity_threshold", -1.0, "--datasheet: same-person distance (< 0: the model's own).")
flags.DEFINE_bool("with_utility", False, "--datasheet: also run the utility benchmark (--classifier_config, "
                  "--seeds; tested on --holdout) into <out>/utility and add it to the datasheet.")
flags.DEFINE_integer("projection_steps", 0, "--datasheet: also project up to 64 training and 64 holdout images "
                     "into --checkpoint's StyleGAN2 generator for N steps: projection membership AUC (0 = off).")
flags.DEFINE_string("feature_classifier", "", "--datasheet: a classifier workdir trained on the real faces "
                    "(e.g. the pipeline's cls_real): Frechet distance and precision/recall also in its "
                    "penultimate features and in dlib's face descriptors (task_features).")
config_flags.DEFINE_config_file("compare", None, "Comparison config (path[:variant]), e.g. "
                                "configs/depth_compare.py:tiny; see jaxgen/workflows/compare.py.")


def main(argv):
    del argv
    use_compile_cache()
    logging.set_verbosity(logging.WARNING)
    if FLAGS.compare is not None:
        compare_from_config(FLAGS.compare, FLAGS.out or None, FLAGS.inception_weights,
                            FLAGS.feature_net)
        return
    if FLAGS.utility:
        if not (FLAGS.real_train and FLAGS.synthetic and FLAGS.test and FLAGS.out):
            raise ConfigError("--utility needs --real_train, --synthetic, --test and --out")
        run_utility(FLAGS.real_train, FLAGS.synthetic, FLAGS.test, FLAGS.classifier_config, FLAGS.out,
                    FLAGS.seeds, FLAGS.resolution, overrides=FLAGS.classifier_set,
                    multiples=parse_multiples(FLAGS.synthetic_multiple), teacher=FLAGS.teacher_arm)
        return
    if FLAGS.datasheet:
        if not (FLAGS.synthetic and FLAGS.real and FLAGS.holdout and FLAGS.out):
            raise ConfigError("--datasheet needs --synthetic, --real, --holdout and --out")
        if FLAGS.projection_steps and not FLAGS.checkpoint:
            raise ConfigError("--projection_steps needs --checkpoint (the generator of --synthetic)")
        sheet = datasheet_for_folders(FLAGS.synthetic, FLAGS.real, FLAGS.holdout, FLAGS.out,
                                      FLAGS.inception_weights, FLAGS.feature_net, FLAGS.identity,
                                      FLAGS.identity_threshold, FLAGS.resolution,
                                      utility=dict(classifier_config=FLAGS.classifier_config, seeds=FLAGS.seeds,
                                                   overrides=FLAGS.classifier_set) if FLAGS.with_utility else None,
                                      projection=dict(run=FLAGS.checkpoint, steps=FLAGS.projection_steps)
                                      if FLAGS.projection_steps else None,
                                      feature_classifier=FLAGS.feature_classifier)
        print(f"datasheet: {FLAGS.out}/datasheet.md (membership AUC "
              f"{sheet['privacy']['membership_auc']:.3f}, DCR ratio {sheet['privacy']['dcr']['ratio']:.3f})")
        return
    if FLAGS.classifier:
        evaluate_classifiers(FLAGS.classifier, FLAGS.test, FLAGS.out or None)
        return
    run(checkpoint=FLAGS.checkpoint, fakes=FLAGS.fakes, real=FLAGS.real, metrics=FLAGS.metrics,
        num_fakes=FLAGS.num_fakes, psi=FLAGS.psi, seed=FLAGS.seed,
        inception_weights=FLAGS.inception_weights, feature_net=FLAGS.feature_net,
        out=FLAGS.out or None, best=FLAGS.best, cache_dir=FLAGS.cache_dir or None)


if __name__ == "__main__":
    run_absl(main, config_flags=("compare",))

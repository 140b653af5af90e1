"""The ``fruitkeras`` command: train, eval, explain, predict, runs, compare, serve, data.

Settings come from the architecture file; options only override them.
TensorFlow is imported inside the commands so that ``--help`` is instant.
"""

import os
import shlex
import sys
import traceback
from pathlib import Path

import click

from fruitkeras.errors import FruitkerasError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly():
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    While its C++ libraries load, TensorFlow writes notices (oneDNN, CPU
    features) straight to fd 2, before any log setting applies; they would bury
    the one line a user needs.  Import errors still raise as usual.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow

                # Looks for GPUs now, while fd 2 is closed: on a machine without a CUDA driver the
                # CUDA-enabled wheel logs a failed cuInit at this first look.
                tensorflow.config.list_physical_devices("GPU")
            finally:
                os.dup2(saved, 2)
            # tf.function's retracing notices: expected when a command explains several models or classes.
            tensorflow.get_logger().setLevel("ERROR")
    finally:
        os.close(saved)


class FruitkerasGroup(click.Group):
    """Turns every failure into one line on stderr (``--debug`` shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as error:  # a bad option of a command: one line, not the usage block
            command = f"{ctx.info_name} {error.ctx.info_name}" if error.ctx and error.ctx is not ctx else ctx.info_name
            self._fail(ctx, f"error: {error.format_message()} (see: {command} --help)", error.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except FruitkerasError as error:
            self._fail(ctx, f"error: {error}", error.exit_code)
        except KeyboardInterrupt:
            self._fail(ctx, "interrupted", 130)
        except Exception as error:  # a bug or an unexpected library failure
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._fail(ctx, f"error: {type(error).__name__}: {message} (run with --debug for the traceback)", 1)

    @staticmethod
    def _fail(ctx, message, code):
        if ctx.obj and ctx.obj.get("debug"):
            traceback.print_exc()
        click.echo(message, err=True)
        ctx.exit(code)


@click.group(cls=FruitkerasGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="fruitkeras")
@click.pass_context
def main(ctx, debug):
    """Train a CNN on fruit photos, evaluate it, and explain its decisions.

    \b
    Data is found from --data, then $FRUITKERAS_DATA, then ./data, and must
    hold Training/<class>/*.jpg and Test/<class>/*.jpg.
    """
    ctx.obj = {"debug": debug}


def chosen_model(run_or_model):
    """The model file a command uses, with a warning on stderr when it is not the newest finished run or
    newer runs are unfinished."""
    from fruitkeras.runs import choice_warnings, resolve_model_path

    path = resolve_model_path(run_or_model)
    for warning in choice_warnings(path):
        click.echo(f"warning: {warning}", err=True)
    return path


def announce_model(path, run_or_model):
    """Name the model on stderr, so that machine-readable output on stdout stays clean."""
    from fruitkeras.run_folder import RUNS_DIR

    how = f" (the newest finished run in {RUNS_DIR}/; --model chooses another)" if run_or_model is None else ""
    click.echo(f"model: {path}{how}", err=True)


def count_on_stderr(done, total):
    """One line on the terminal's stderr, rewritten as images are answered."""
    click.echo(f"\ranswered {done:,} of {total:,} images", err=True, nl=done == total)


def load_tensorflow():
    """Called first by every command that needs TensorFlow (not by --help)."""
    if not click.get_current_context().find_root().obj.get("debug"):
        import_tensorflow_quietly()


@main.command()
@click.argument("architecture", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", help="Dataset folder (holds Training/ and Test/).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the file's training.epochs.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the run (default: runs/<name>-<date-time>).")
@click.option("--seed", type=int, help="Seed for the split, shuffling and weights (default 0).")
@click.option("--limit-per-class", type=click.IntRange(min=1), help="Use at most N training images per class (smoke runs).")
@click.option("--test-eval/--no-test-eval", "test_evaluation", default=None,
              help="Log Test/ accuracy and loss after every epoch (default: on when Test/ exists).")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Change a field of the architecture file for this run (repeatable): training.learning_rate=0.001, "
                   "layers.1.filters=32; validated like the file, recorded in run.json.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --run-dir.")
@click.option("--quiet", is_flag=True, help="No progress bar: one line per epoch (always so when not on a terminal).")
@click.option("--distribute", type=click.Choice(["none", "mirrored", "multi-worker"]), default="none", show_default=True,
              help="mirrored: the local GPUs or --devices; multi-worker: the machines in $TF_CONFIG (README: Scaling out).")
@click.option("--devices", help="mirrored: the devices to use, e.g. GPU:0,GPU:1 (CPU:0,CPU:1 splits the CPU in two).")
@click.option("--mixed-precision", is_flag=True, default=None,
              help="Force float16 compute on a GPU (bfloat16 elsewhere); variables and statistics stay float32 "
                   "(default: the file's training.mixed_precision: true, false, or \"auto\", the machine's choice).")
def train(architecture, data, epochs, run_dir, seed, limit_per_class, test_evaluation, overrides, resume, quiet,
          distribute, devices, mixed_precision):
    """Train the model described by ARCHITECTURE (a JSON file).

    Writes model.keras, history.csv (every epoch with timestamp, seconds,
    validation and test metrics), the architecture copy and learning curves
    into the run folder.

    \b
    Examples:
      fruitkeras train architectures/vgg_small.json --data ../shared/data/fruits-360-77class
      fruitkeras train architectures/vgg_small.json --epochs 2 --limit-per-class 20 --run-dir runs/smoke
      fruitkeras train architectures/vgg_small.json --set training.learning_rate=0.001 --set layers.1.filters=32
      fruitkeras train architectures/vgg_small.json --run-dir runs/smoke --resume
      fruitkeras train architectures/vgg_small.json --distribute mirrored --mixed-precision
    """
    if resume and run_dir is None:
        raise click.UsageError("--resume needs --run-dir (the run to continue)")
    load_tensorflow()
    from fruitkeras.training import train_architecture

    done = train_architecture(architecture, data=data, run_dir=run_dir, epochs=epochs, seed=seed,
                              limit_per_class=limit_per_class, resume=resume, test_evaluation=test_evaluation,
                              verbose=2 if sys.stdout.isatty() and not quiet else 1, distribute=distribute,
                              devices=devices, mixed_precision=mixed_precision, overrides=overrides)
    click.echo(f"saved {done / 'model.keras'}; evaluate with: fruitkeras eval {shlex.quote(str(done))}")


@main.command(name="eval")
@click.argument("run_or_model", required=False, type=click.Path(path_type=Path))
@click.option("--data", help="Dataset folder (holds Test/).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the reports (default: the model's folder).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Test images per forward pass.")
@click.option("--bn-train-mode", is_flag=True,
              help="Normalise with each batch's statistics instead of the moving ones.")
@click.option("--distribute", type=click.Choice(["none", "mirrored"]), default="none", show_default=True,
              help="mirrored: split every batch over the local GPUs or --devices.")
@click.option("--devices", help="mirrored: the devices to use, e.g. GPU:0,GPU:1.")
def evaluate(run_or_model, data, out, batch_size, bn_train_mode, distribute, devices):
    """Evaluate a run folder or model file (default: the newest run) on Test/.

    Prints accuracy, loss, per-class accuracy and the most frequent
    confusions; writes test_metrics.json, test_per_class.csv,
    confusion_matrix.csv, confusion_matrix.png and test_mistakes.csv.

    \b
    Examples:
      fruitkeras eval runs/fruits77-vgg_small --data ../shared/data/fruits-360-77class
      fruitkeras eval runs/smoke/model.keras --bn-train-mode
    """
    load_tensorflow()
    from fruitkeras.evaluation_report import evaluate_run

    evaluate_run(chosen_model(run_or_model), data, out, batch_size, bn_train_mode, echo=click.echo,
                 distribute=distribute, devices=devices)


from fruitkeras.explain.registry import NAMES as EXPLAIN_METHODS, OPTIONS, TAKEN_BY  # noqa: E402  (no TensorFlow)

CLICK_TYPES = {"count": click.IntRange(min=1), "count or none": click.IntRange(min=1), "amount": click.FloatRange(min=0),
               "text": str}


def method_options(command):
    """The options every explanation method declares (``registry.OPTIONS``), as click options of ``command``."""
    for option in reversed(list(OPTIONS.values())):
        used = " (" + ", ".join(TAKEN_BY[option.name]) + ")" if len(TAKEN_BY[option.name]) > 1 else ""
        if option.kind == "flag":
            flag = f"{option.flag}/--no-{option.flag[2:]}" if option.negatable else option.flag
            command = click.option(flag, option.name, is_flag=True, default=option.default,
                                   show_default=option.negatable, help=option.help + used)(command)
        else:
            kind = click.Choice(option.kind) if isinstance(option.kind, tuple) else CLICK_TYPES[option.kind]
            command = click.option(option.flag, option.name, type=kind, default=option.default,
                                   show_default=option.default is not None, help=option.help + used)(command)
    return command


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--method", "methods", type=click.Choice(EXPLAIN_METHODS + ("all",)), multiple=True,
              default=["gradient"], show_default=True, help="Repeat for several methods; 'all' runs every one.")
@click.option("--model", "model_arg", type=click.Path(path_type=Path),
              help="Run folder or model file (default: the newest run in runs/).")
@click.option("--label", help="Class to explain (default: the predicted class).")
@method_options
@click.option("--shared-scale", is_flag=True, help="One colour scale for every row of the grid figure.")
@click.option("--metrics", is_flag=True,
              help="Print each map's faithfulness: deletion and insertion AUC, and the rank correlation with the "
                   "map of a model with re-initialised weights.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("explanations"),
              show_default=True, help="Folder for the figures (.png) and raw maps (.npy).")
@click.option("--cut-out/--whole-photo", default=True, show_default=True,
              help="Explain an unfamiliar photo as it is guessed: from the fruit cut out of it (GrabCut).")
def explain(images, methods, model_arg, label, shared_scale, metrics, out, cut_out, **declared):
    """Explain the model's decision on each image with a heatmap.

    IMAGES are files, folders (all their images) or globs.  Writes
    <image>_<method>-<options>-<loss|logit>.png (original, heatmap, overlay)
    and the raw map as .npy into --out, and grid_<method>-<options>-<loss|logit>.png
    for several images; the last word is what the map explains, and other
    options give other file names.  Images of any size or mode are
    converted as in training.

    \b
    Examples:
      fruitkeras explain samples/Beetroot_1.jpg
      fruitkeras explain samples/Banana_1.jpg --method smoothgrad --smooth integrated --samples 16
      fruitkeras explain a.jpg b.png --method gradient --method occlusion --model runs/fruits77-vgg_small
      fruitkeras explain a.jpg --method all --label "Apple Braeburn"
      fruitkeras explain 'photos/*.jpg' --method occlusion --patch 10 --stride 2 --fill grey
      fruitkeras explain a.jpg --method gradcam --layer 9 --method integrated --steps 128
      fruitkeras explain a.jpg --method all --metrics
    """
    from fruitkeras.image_files import collect_images

    model_path = chosen_model(model_arg)  # a missing model or image is said before TensorFlow's 5 s import
    paths = collect_images(images)
    load_tensorflow()
    from fruitkeras.explain.report import ExplainOptions, explain_files

    chosen = EXPLAIN_METHODS if "all" in methods else tuple(dict.fromkeys(methods))  # keeps order, drops repeats
    options = ExplainOptions(**declared, progress=sys.stdout.isatty())  # a bar for a person watching, not for logs
    explain_files(model_path, paths, chosen, options, out, label, shared_scale, echo=click.echo,
                  metrics=metrics, cut_out=cut_out)


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", "model_arg", type=click.Path(path_type=Path),
              help="Run folder or model file (default: the newest run in runs/).")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="How many classes per image.")
@click.option("--format", "style", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table for people; csv (image, rank, class, probability, verdict, familiarity, cut_out) or "
                   "json for programs.")
@click.option("--cut-out/--whole-photo", default=True, show_default=True,
              help="Guess an unfamiliar photo's classes from the fruit cut out of it (GrabCut); the verdict "
                   "stays the photo's.")
def predict(images, model_arg, top, style, cut_out):
    """The most probable classes for each image, with probabilities and a verdict.

    IMAGES are files, folders (all their images) or globs; images of any size
    or mode are converted as in training.  The verdict says what the top class
    is worth: known (close to photos the model learned from), unknown class
    (passed the photo test, but far from every training photo: none of the
    classes is the answer, whatever the photo shows) or unfamiliar photo (its
    statistics unlike the training photos'); "not available" for a run without familiarity
    statistics (fruitkeras fit-familiarity RUN fits them).  An unfamiliar
    photo gets a second look: its classes are guessed from the fruit cut out
    of it, on white (cut_out: yes); its verdict stays "unfamiliar photo".
    An image that cannot be read is named on stderr and left out of every
    format; the others are answered, and the command then exits with 1.

    \b
    Examples:
      fruitkeras predict samples/
      fruitkeras predict photo.jpg --top 3 --model runs/fruits77-vgg_small
      fruitkeras predict 'photos/*.jpg' --format csv > predictions.csv
    """
    from fruitkeras.image_files import collect_images
    from fruitkeras.prediction import predict_files

    model_path = chosen_model(model_arg)  # a missing model or image is said before TensorFlow's 5 s import
    paths = collect_images(images)
    load_tensorflow()
    # A count for a person watching answers that go to a file or a pipe; never into logs or between answers.
    progress = count_on_stderr if sys.stderr.isatty() and not sys.stdout.isatty() else None
    skipped = []
    for number, piece in enumerate(predict_files(model_path, paths, top, style, cut_out, progress=progress,
                                                 skipped=skipped)):
        if number == 0:  # no readable image fails before this line
            announce_model(model_path, model_arg)
        click.echo(piece, nl=False)
        sys.stdout.flush()  # each chunk's answers out before the next chunk is read
    if skipped:  # every format: the answers hold only the readable images, and the exit status says so
        raise FruitkerasError(f"{len(skipped)} of {len(paths)} images could not be read (the warnings above name "
                              "them); the others are answered")


@main.command(name="fit-familiarity")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", help="Dataset folder (holds Training/; default: the run's own, from run.json).")
@click.option("--force", is_flag=True, help="Fit again over an existing familiarity.npz.")
def fit_familiarity(run_dir, data, force):
    """Fit the verdict's statistics of a run trained before verdicts existed.

    Training does this itself; this command does it for an older run, on the
    run's own Training data, validation share and augmentation, and writes
    familiarity.npz into the run folder.

    \b
    Examples:
      fruitkeras fit-familiarity runs/fruits77-vgg_small --data ../shared/data/fruits-360-77class
    """
    load_tensorflow()
    from fruitkeras.fit_familiarity import fit_run

    fit_run(run_dir, data, force, echo=click.echo)


@main.command(name="runs")
@click.argument("runs_dir", required=False, default="runs", type=click.Path(file_okay=False, path_type=Path))
def list_runs(runs_dir):
    """One line per run: architecture, epochs done, finished or interrupted, test accuracy, date.

    \b
    Examples:
      fruitkeras runs
      fruitkeras runs /tmp/experiments
    """
    from fruitkeras.runs import describe_runs, format_runs

    if not runs_dir.is_dir():
        raise FruitkerasError(f"{runs_dir}: no such folder")
    click.echo(format_runs(describe_runs(runs_dir), runs_dir))


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--metric", default="test_accuracy", show_default=True,
              help="The history.csv column to compare (its loss is plotted too).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("comparison"),
              show_default=True, help="Folder for comparison.png, comparison.csv and comparison.md.")
def compare(runs, metric, out):
    """Overlay the learning curves of several runs and tabulate their results and differences.

    \b
    Examples:
      fruitkeras compare runs/experiments/recipe-* runs/fruits77-vgg_small
      fruitkeras compare runs/a runs/b --metric val_accuracy --out docs/ab
    """
    from fruitkeras.comparison import TABLE_FILES, compare_runs

    table = compare_runs(runs, metric, out)
    click.echo(table.drop(columns=["differs"]).to_string(index=False))
    click.echo("wrote " + ", ".join(str(out / name) for name in TABLE_FILES))


@main.command()
@click.argument("run_or_model", required=False, type=click.Path(path_type=Path))
@click.option("--data", help="Dataset folder whose Test/ images the page offers (default: $FRUITKERAS_DATA or "
                             "./data when present, else none).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default is this machine only (0.0.0.0: every network).")
@click.option("--port", type=click.IntRange(min=1, max=65535), default=7860, show_default=True, help="Port to listen on.")
def serve(run_or_model, data, host, port):
    """A web page for the inspection: upload or pick an image, see the prediction and the heatmaps.

    Uses RUN_OR_MODEL (default: the newest run, on a fresh clone the shipped
    one) and the bundled sample photos; with --data also the Test split.  The
    Model tab shows the run's test accuracy, per-class table, confusion plot,
    learning curves and training log.

    \b
    Examples:
      fruitkeras serve
      fruitkeras serve runs/fruits77-vgg_small --data ../shared/data/fruits-360-77class
      fruitkeras serve --port 8080
    """
    from fruitkeras.webapp import check_port_free

    check_port_free(host, port)  # at once: before TensorFlow, Gradio and the model load
    load_tensorflow()
    from fruitkeras.data import DATA_ENV, resolve_data_dir
    from fruitkeras.webapp import serve_model

    model_path = chosen_model(run_or_model)
    if data is not None or os.environ.get(DATA_ENV):
        data = resolve_data_dir(data)  # given, so it must exist: the same error as train and eval
    elif Path("data").is_dir():
        data = resolve_data_dir()
    # else: no dataset here; the page offers uploads and samples only
    serve_model(model_path, data, host, port, echo=click.echo)


@main.group()
def data():
    """Get a dataset (download), learn what to know before training on it (check), decode it ahead (prepare)."""


@data.command(name="download")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The dataset folder to create (Training/ and Test/ go inside); must not hold anything yet.")
@click.option("--url", default=None, help="The release archive (.zip) to fetch (default: the official Fruits-360 "
                                          "100x100 repository's archive).")
@click.option("--classes", default="benchmark", show_default=True,
              help="benchmark (the 77 classes), all, or a file with one class name per line.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the archive is kept between runs (default: Keras's cache, ~/.keras/fruitkeras).")
def data_download(out, url, classes, cache_dir):
    """Download a Fruits-360 release and extract Training/ and Test/ of the chosen classes.

    \b
    Examples:
      fruitkeras data download --out data
      fruitkeras data download --classes all --out fruits-360-all
      fruitkeras data download --url https://example.org/fruits-360.zip --classes my-classes.txt --out data
    """
    load_tensorflow()
    from fruitkeras.data_download import DEFAULT_URL, download_dataset

    download_dataset(out, url or DEFAULT_URL, classes, str(cache_dir) if cache_dir else None, echo=click.echo)


@data.command(name="prepare")
@click.argument("architecture", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", help="Dataset folder (holds Training/ and Test/), as for train.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Change a field of the architecture file, as for train (input.height=64: another size).")
def data_prepare(architecture, data, overrides):
    """Decode the photos into the decoded cache at ARCHITECTURE's input size, so that the next train starts at once.

    The first training ever on a dataset decodes its photos (about 20 s for
    the 77-class set); run this before the examiner watches and the live
    training starts from the cache.

    \b
    Examples:
      fruitkeras data prepare architectures/live.json --data ../shared/data/fruits-360-77class
      fruitkeras data prepare architectures/vgg_small.json --set input.height=64 --set input.width=64
    """
    load_tensorflow()
    from fruitkeras.decoded_cache import prepare_data

    prepare_data(architecture, data, overrides, echo=click.echo)


@data.command(name="check")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def data_check(folder, as_json):
    """Counts, unreadable files, exact duplicates and near-duplicate frames across Training and Test.

    Exits 1 when there are unreadable files or exact duplicates.

    \b
    Examples:
      fruitkeras data check ../shared/data/fruits-360-77class
      fruitkeras data check data --json > data-check.json
    """
    load_tensorflow()
    import json

    from fruitkeras.data_check import check_dataset, format_report

    findings = check_dataset(folder)
    click.echo(json.dumps(findings, indent=2) if as_json else format_report(findings))
    if not findings["verdict"].startswith("ok"):
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(main())

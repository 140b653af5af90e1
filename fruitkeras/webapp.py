"""``fruitkeras serve``: the inspection page, a thin Gradio front end over ``Inspection``.

Explain tab: choose an image (upload, sample photo, Test split), see the
top-5 predictions and the heatmaps, download each map as PNG and .npy.
Model tab: the run's proof (test accuracy, per-class table, confusion plot,
learning curves, the timestamped training log).  Every number comes from
the functions the commands use; nothing is computed here.
"""

import collections
import os
import shutil
import tempfile
import threading
from pathlib import Path

from fruitkeras.errors import FruitkerasError
from fruitkeras.familiarity import UNFAMILIAR_PHOTO, UNKNOWN_CLASS, plain_words
from fruitkeras.explain.registry import METHODS as REGISTRY, OPTIONS, ExplainOptions
from fruitkeras.precision import recorded_compute

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # the page phones nowhere

PREDICTED = "(the predicted class)"
PAGE_OPTIONS = [option for option in OPTIONS.values() if option.page]  # the settings the page shows, in this order
METHOD_LABELS = {method.label: method.name for method in REGISTRY}  # page label -> method name
DEFAULT_METHODS = ["gradient", "occlusion"]
CONCURRENT_REQUESTS = 4  # explanations run side by side: a long occlusion does not hold up other users
MAX_UPLOAD = "50mb"  # a 6000x4000 JPEG is about 10 MB
# The gallery's cells are square by default; the figures are three panels wide.
CSS = """
#heatmaps .grid-wrap { height: auto !important; max-height: none !important; }
#heatmaps .thumbnail-item { aspect-ratio: auto !important; height: auto !important; }
#heatmaps .thumbnail-item img { height: auto !important; width: 100% !important; }
@media (max-width: 640px) { #title h2 { font-size: 1.15rem; } }
"""


class RequestFolders:
    """A new folder in ``work_dir`` for each request's maps, keeping only the newest ``keep``.

    Gradio copies a result's files into its own cache before it shows them, so
    a finished request's folder only fills the disk; ``keep`` is far above the
    requests that run at once, so no request loses its folder while it runs.
    """

    def __init__(self, work_dir, keep=16 * CONCURRENT_REQUESTS):
        self.work_dir, self.keep = work_dir, keep
        self._made = collections.deque()
        self._lock = threading.Lock()

    def new(self):
        folder = tempfile.mkdtemp(dir=self.work_dir)
        with self._lock:
            self._made.append(folder)
            while len(self._made) > self.keep:
                shutil.rmtree(self._made.popleft(), ignore_errors=True)
        return folder


def percent(probability):
    """A probability as the page shows it: never a bare "0%" for a runner-up that is merely small."""
    return "< 0.1%" if probability < 0.001 else f"{probability:.1%}"


def top_table(top):
    """The top-5 as a Markdown table, the most probable first, in bold."""
    rows = [f"| {'**' + name + '**' if rank == 0 else name} | {percent(probability)} |"
            for rank, (name, probability) in enumerate(top)]
    return "\n".join(["| class | probability |", "|---|---:|", *rows])


def confusions_table(confusions):
    """The most frequent mistakes as a Markdown table under its heading."""
    rows = [f"| {' | '.join(str(value) for value in row)} |" for row in confusions.itertuples(index=False)]
    return "\n".join(["**The most frequent mistakes on Test**", "", f"| {' | '.join(confusions.columns)} |",
                      "|---|---|---:|---:|", *rows])


def verdict_text(result):
    """The verdict in plain words, above the top-5."""
    familiarity = "" if result.familiarity is None else f" · familiarity {result.familiarity:.2f}"
    cut = " The classes are guessed from the fruit cut out of the photo (the image shown)." if result.cut_out else ""
    return f"**Verdict: {result.verdict}**{familiarity}. {plain_words(result.verdict, result.predicted)}{cut}"


def status_line(result):
    """The line above the maps: the answer (never a class for an unfamiliar photo or an unknown class), true
    class when known, explained class, seconds per method."""
    predicted, probability = result.top[0]
    if result.verdict == UNFAMILIAR_PHOTO:
        text = f"**Unfamiliar photo**: no class is given for *{result.name}*"
    elif result.verdict == UNKNOWN_CLASS:
        text = f"**None of the model's classes** for *{result.name}* (closest: {predicted}, {probability:.1%})"
    else:
        text = f"**Predicted: {predicted}** ({probability:.1%}) for *{result.name}*"
    if result.true_class is not None:
        text += f" · true class: {result.true_class} " + ("(correct)" if result.true_class == predicted else "(wrong)")
    text += f" · explaining '{result.explained_class}'"
    seconds = ", ".join(f"{method} {s:.2f} s" for method, s in result.seconds.items())
    return text + (f" · {seconds}" if seconds else "")


def empty_state(test_images):
    """The answer's place before any image: the pickers stand above it on every screen."""
    return f"Upload a photo, or pick a sample{' or a Test image' if test_images else ''} above: the answer comes here."


def run_summary(report, model_path):
    record, metrics = report.record, report.metrics
    lines = [f"### Run `{report.run_dir}`", f"Model file: `{model_path}`"]
    if metrics:
        correct = round(metrics["accuracy"] * metrics["images"])
        lines.append(f"**Test accuracy {metrics['accuracy']:.2%}** ({correct:,} of {metrics['images']:,} Test images, "
                     f"loss {metrics['loss']:.4f}, batch norm on {metrics.get('batch_norm', 'moving statistics')}), "
                     f"measured by `fruitkeras eval` on `{metrics.get('data', '?')}`.")
    else:
        lines.append(f"Not evaluated yet: run `fruitkeras eval {report.run_dir}` to add the test accuracy here.")
    if record:
        lines.append(f"Architecture `{record.get('architecture', '?')}`, {record.get('epochs', '?')} epochs, "
                     f"seed {record.get('seed', '?')}, computed in {recorded_compute(record) or '?'}; "
                     f"started {record.get('started', '?')}, "
                     f"finished {record.get('finished', '(not finished)')}.")
    return "\n\n".join(lines)


def page_control(gr, option):
    """The page's control for a declared option: a slider for a (lowest, highest, step), else a dropdown of its
    choices that takes other values too."""
    if isinstance(option.page[0], str):
        return gr.Dropdown(list(option.page), value=option.default, allow_custom_value=True, label=option.label)
    lowest, highest, step = option.page
    return gr.Slider(lowest, highest, value=option.default, step=step, label=option.label)


def with_page_settings(leading):
    """Makes ``function(*leading inputs, methods, target, values, progress)`` a Gradio callback with one positional
    parameter per input (Gradio passes inputs by position, as many as the page's settings are) and the progress
    bar last (Gradio finds it by its parameter's default), so that the settings follow ``PAGE_OPTIONS``."""
    import inspect

    import gradio as gr

    def wrap(function):
        count = leading + 2

        def callback(*given):
            *given, progress = given
            return function(*given[:count], tuple(given[count:]), progress)

        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        parameters = [inspect.Parameter(f"input_{i}", kind) for i in range(count + len(PAGE_OPTIONS))]
        parameters.append(inspect.Parameter("progress", kind, default=gr.Progress()))
        callback.__signature__ = inspect.Signature(parameters)
        callback.__name__ = function.__name__
        return callback

    return wrap


def build_page(inspection, work_dir):
    """The Gradio Blocks of the page (not yet launched); each request writes its maps into a new folder in ``work_dir``."""
    import gradio as gr

    classes = inspection.class_names
    folders = RequestFolders(work_dir)

    def message(chosen, text):
        """What a request shows when it has no result: the text in the status line, the outputs emptied."""
        return chosen, text, None, None, None, None

    def explain(path, name, true_class, methods, target, values, progress):
        """(chosen, status, preview, top-5, heatmaps, downloads) for one image file; errors go to the status line.
        ``values``: the page's settings (``PAGE_OPTIONS``)."""
        chosen = {"path": str(path), "name": name, "true_class": true_class}
        if not methods:
            return message(chosen, "Choose at least one method.")
        settings = {option.name: int(value) if option.kind == "count" else value
                    for option, value in zip(PAGE_OPTIONS, values)}  # a slider's value comes as a float
        options = ExplainOptions(**settings, progress=lambda done, total: progress((done, total), desc="occlusion",
                                                                                    unit="positions"))
        try:
            result = inspection.explain(path, [METHOD_LABELS[m] for m in methods], options,
                                        folders.new(), None if target == PREDICTED else target,
                                        name, true_class)
        except FruitkerasError as error:
            return message(chosen, f"**Error:** {str(error).replace(str(path), name)}")
        except Exception as error:  # a bug must not take the page down; the message says what broke
            return message(chosen, f"**Error:** {type(error).__name__}: {error}")
        gallery = [(str(result.figures[m]), f"{m}: {result.seconds[m]:.2f} s") for m in result.figures]
        downloads = [str(p) for m in result.figures for p in (result.figures[m], result.maps[m])]
        return (chosen, status_line(result), result.image, verdict_text(result) + "\n\n" + top_table(result.top),
                gallery, downloads)

    @with_page_settings(leading=1)
    def explain_upload(file, methods, target, values, progress):
        if file is None:
            return message(None, "No file received.")
        return explain(file, Path(file).name, None, methods, target, values, progress)

    @with_page_settings(leading=1)
    def explain_sample(name, methods, target, values, progress):
        if name not in inspection.samples:
            return message(None, f"**Error:** no sample photo '{name}'")
        return explain(inspection.samples[name], name, inspection.sample_class(name), methods, target, values,
                       progress)

    @with_page_settings(leading=2)
    def explain_test_image(class_name, file_name, methods, target, values, progress):
        try:
            path = inspection.test_image(class_name, file_name)
        except FruitkerasError as error:
            return message(None, f"**Error:** {error}")
        return explain(path, f"Test/{class_name}/{file_name}", class_name, methods, target, values, progress)

    @with_page_settings(leading=0)
    def explain_random(methods, target, values, progress):
        path, class_name = inspection.random_test_image()
        shown = explain(path, f"Test/{class_name}/{path.name}", class_name, methods, target, values, progress)
        files = [p.name for p in inspection.test_images[class_name]]
        return shown + (class_name, gr.update(choices=files, value=path.name))

    @with_page_settings(leading=1)
    def explain_again(chosen, methods, target, values, progress):
        if not chosen:
            return message(None, "Choose an image first.")
        return explain(chosen["path"], chosen["name"], chosen["true_class"], methods, target, values, progress)

    def test_files(class_name):
        return gr.update(choices=[p.name for p in inspection.test_images.get(class_name, [])], value=None)

    report = inspection.run_report()
    with gr.Blocks(title=f"fruitkeras: {report.run_dir.name}") as page:
        # On a phone the title is smaller (CSS): the answer must fit the first screen under the pickers.
        gr.Markdown(f"## fruitkeras: why the model `{report.run_dir.name}` sees what it sees", elem_id="title")
        chosen = gr.State(None)
        with gr.Tab("Explain"):
            # The first screen holds the answer: the pickers in one bar above it (stacked on a phone, still above
            # the answer), then the answer, its verdict and the photo beside the heatmaps; the settings below.
            with gr.Row(elem_id="pickers"):
                upload = gr.File(label="Upload a photo (any size or format)", height=96, elem_id="upload")
                sample = gr.Dropdown(list(inspection.samples), value=None, label="... or a sample photo",
                                     elem_id="sample")
                if inspection.test_images:
                    test_class = gr.Dropdown(sorted(inspection.test_images), value=None,
                                             label="... or a Test image: class", elem_id="test-class")
                    # Its choices follow the class; any name is accepted and checked against Test/.
                    test_file = gr.Dropdown([], value=None, label="Test image", allow_custom_value=True,
                                            elem_id="test-file")
                    random_button = gr.Button("Random test image", elem_id="random-test", size="sm", scale=0,
                                              min_width=160)
            with gr.Row():
                with gr.Column(scale=1, elem_id="answer"):
                    status = gr.Markdown(empty_state(bool(inspection.test_images)), label="status", elem_id="status")
                    top5 = gr.Markdown("", elem_id="top5")  # the verdict in words, then the top-5 table
                    preview = gr.Image(label="What the model sees", interactive=False, height=160, elem_id="preview")
                with gr.Column(scale=2):
                    # The heading stands above the gallery: as the gallery's own label it covered the first title.
                    gr.Markdown("**Heatmaps:** photo | map | overlay")
                    heatmaps = gr.Gallery(show_label=False, columns=1, height="auto",
                                          object_fit="contain", allow_preview=False, elem_id="heatmaps")
                    methods = gr.CheckboxGroup(list(METHOD_LABELS), value=DEFAULT_METHODS, label="Methods",
                                               elem_id="methods")
                    # A row of its own: beside the methods, a narrow window left its arrow over the text.
                    target = gr.Dropdown([PREDICTED] + classes, value=PREDICTED, label="Class to explain",
                                         elem_id="target")
                    with gr.Accordion("Occlusion settings", open=False):
                        with gr.Row():
                            controls = [page_control(gr, option) for option in PAGE_OPTIONS]
                    again = gr.Button("Explain again with these settings", variant="primary", elem_id="explain")
                    downloads = gr.File(label="Download the maps (PNG figure, raw .npy)", file_count="multiple",
                                        interactive=False, elem_id="downloads")
        with gr.Tab("Model"):
            gr.Markdown(run_summary(report, inspection.model_path), elem_id="run-summary")
            if report.per_class is not None:
                gr.Dataframe(report.per_class, label="Per-class Test accuracy, weakest first (click a header to sort)",
                             interactive=False, max_height=400, elem_id="per-class")
            # One per row, at full width: side by side, a 77-class confusion matrix could not be read.
            with gr.Column():
                if report.confusions is not None:  # the matrix's 77 labels are small: its worst cells, readable
                    gr.Markdown(confusions_table(report.confusions), elem_id="confusions")
                if report.confusion_png:
                    gr.Image(str(report.confusion_png), label="Confusion (the most confused classes)", height=760,
                             interactive=False)
                if report.curves_png:
                    gr.Image(str(report.curves_png), label="Learning curves", interactive=False)
            if report.history is not None:
                gr.Dataframe(report.history.round(4), label="Training log (history.csv): one row per epoch, with its timestamp",
                             interactive=False, max_height=400, elem_id="history")

        settings = [methods, target, *controls]
        shown = [chosen, status, preview, top5, heatmaps, downloads]
        upload.upload(explain_upload, [upload] + settings, shown, api_name="explain_upload")
        sample.input(explain_sample, [sample] + settings, shown, api_name="explain_sample")
        again.click(explain_again, [chosen] + settings, shown, api_name="explain")
        # A new choice clears the other pickers, so the page never shows a previous pick beside the new image.
        pickers = [sample] + ([test_class, test_file] if inspection.test_images else [])
        # One output takes one value: a list for it (no --data: the samples alone) made Gradio warn at every upload.
        def clear_pickers():  # fresh updates each time: Gradio consumes the ones it is given
            cleared = [gr.update(value=None) for _ in pickers]
            return cleared if len(cleared) > 1 else cleared[0]

        upload.upload(clear_pickers, None, pickers, api_name=False)
        if inspection.test_images:
            sample.input(lambda: [gr.update(value=None)] * 2, None, [test_class, test_file], api_name=False)
            test_class.input(test_files, test_class, test_file, api_name=False)
            test_file.input(explain_test_image, [test_class, test_file] + settings, shown, api_name="explain_test_image")
            test_file.input(lambda: gr.update(value=None), None, sample, api_name=False)
            random_button.click(explain_random, settings, shown + [test_class, test_file], api_name="random_test_image")
            random_button.click(lambda: gr.update(value=None), None, sample, api_name=False)
    page.queue(default_concurrency_limit=CONCURRENT_REQUESTS)
    return page


def check_port_free(host, port):
    """A one-line error when ``host:port`` cannot be listened on (taken, or not this machine's address).

    The command line calls it before TensorFlow, Gradio and the model load; Gradio's own check comes only
    after them, waits, and names another option."""
    import errno
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the server itself binds: a port whose last server just stopped (TIME_WAIT) is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except socket.gaierror as error:  # not an address or name this machine can look up
            raise FruitkerasError(f"cannot serve on {host}: not an address of this machine ({error.strerror}); "
                                  "choose another --host, e.g. 127.0.0.1 or 0.0.0.0") from None
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:  # a valid address, but another machine's
                raise FruitkerasError(f"cannot serve on {host}: not an address of this machine; choose another "
                                      "--host, e.g. 127.0.0.1 or 0.0.0.0") from None
            raise FruitkerasError(f"cannot serve on {host}:{port} ({error.strerror or error}); "
                                  "choose another port with --port") from None


def serve_model(model_path, data_root=None, host="127.0.0.1", port=7860, echo=print):
    """Load the model, build the page and serve it until Ctrl-C."""
    import gradio as gr

    from fruitkeras.page_service import Inspection

    inspection = Inspection(model_path, data_root)
    # System fonts: the default theme fetches web fonts, which a machine without internet cannot.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    with tempfile.TemporaryDirectory(prefix="fruitkeras-serve-") as work_dir:
        page = build_page(inspection, work_dir)
        # Traced and compiled (XLA) once, here, instead of in the first visitor's request.
        inspection.warm_up([METHOD_LABELS[m] for m in DEFAULT_METHODS], ExplainOptions(), tempfile.mkdtemp(dir=work_dir))
        try:
            _, url, _ = page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                                    max_file_size=MAX_UPLOAD, theme=theme, css=CSS, footer_links=["api"])
        except OSError as error:  # the port is taken, or the host is not this machine's
            raise FruitkerasError(f"cannot serve on {host}:{port} ({error})") from None
        data_note = f", Test images from {data_root}" if data_root else " (add --data DIR to pick Test images)"
        if inspection.familiarity_problem:
            echo(f"warning: {inspection.familiarity_problem}; the page's verdicts are \"not available\"")
        echo(f"serving {model_path}{data_note} at {url}  (Ctrl-C stops)")
        try:
            page.block_thread()
        finally:
            page.close()

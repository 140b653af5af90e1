"""The ``predict`` command's answer as text: ``table`` for people, ``csv`` or ``json`` for programs.

Each piece is one ``fruitkeras.prediction.Prediction``'s answer, so the command can write it as soon as its
chunk of files is answered.
"""


def rounded(familiarity):
    return None if familiarity is None else round(familiarity, 4)


def format_predictions(predictions, style):
    """The predictions as pieces of text, one per prediction (after a header for ``csv``), that joined are the
    whole answer: ``table`` for people, ``csv`` or ``json`` (one list) for programs."""
    import json

    number = -1
    for number, p in enumerate(predictions):  # nothing is written before the first answer, not even a header
        if style == "json":
            item = json.dumps({"image": str(p.path), "verdict": p.verdict, "familiarity": rounded(p.familiarity),
                               "cut_out": p.cut_out,
                               "top": [{"class": c, "probability": round(q, 6)}
                                       for c, q in zip(p.classes, p.probabilities)]}, indent=2)
            yield ("[\n" if number == 0 else ",\n") + "\n".join("  " + line for line in item.splitlines())
        elif style == "csv":
            yield ("image,rank,class,probability,verdict,familiarity,cut_out\n" if number == 0 else "") + _csv_rows(p)
        else:
            yield _table_lines(p)
    if style == "json":
        yield "\n]\n" if number >= 0 else "[]\n"


def _csv_rows(p):
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    familiarity = "" if p.familiarity is None else f"{p.familiarity:.4f}"
    for rank, (name, probability) in enumerate(zip(p.classes, p.probabilities), start=1):
        writer.writerow([str(p.path), rank, name, f"{probability:.6f}", p.verdict, familiarity,
                         "yes" if p.cut_out else "no"])
    return out.getvalue()


def _table_lines(p):
    familiarity = "" if p.familiarity is None else f", familiarity {p.familiarity:.3f}"
    cut = " (the fruit cut out of the photo)" if p.cut_out else ""
    lines = [f"{p.path}: {p.classes[0]} ({p.probabilities[0]:.1%}); verdict: {p.verdict}{familiarity}{cut}"]
    lines += [f"    {rank}. {name:<24} {probability:7.2%}"
              for rank, (name, probability) in enumerate(zip(p.classes, p.probabilities), start=1)]
    return "\n".join(lines) + "\n"

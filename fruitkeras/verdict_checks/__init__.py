"""The verdict's tests, one module each, applied in this order: the first a photo fails decides its verdict
(its ``rejects_as``); a photo that passes all is ``known``.

A test is a class with ``name`` (its arrays' prefix in familiarity.npz), ``label``
(the open-set benchmark's row), ``rejects_as`` (a verdict of ``words``), and
``fit(summaries, features) -> state`` on the training photos,
``score(state, summaries, features) -> (N,)`` (higher: more in-distribution),
``fits(state, summaries, features)``, ``stored(state)`` / ``restored(arrays)``
for the file.  ``summaries`` and ``features`` are ``familiarity.image_features``'
block summaries and normalised penultimate features, from one forward pass.

Adding a test is one module here plus one line in ``ENTRIES``, with its share
of the rejections: the last test takes the rest.
"""

import importlib

# (module:class of a test, its share of the rejections of held-out training photos; None: the rest).  The photo
# test's share was chosen on the development sets (docs/real-photos.md): it separates scenes by a wide margin, and
# the familiarity test needs the room, as unseen classes are near its threshold.  At 0.5, 9.5% of unseen-class
# photos were accepted, at 0.2 6.4%, with the same real photos answered from their cut-outs; at 0.1 fewer of
# those were.
ENTRIES = (
    ("photo_typicality:PhotoTypicality", 0.2),
    ("nearest_photo:NearestTrainingPhoto", None),
)


def _made(entry):
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)()


CHECKS = tuple((_made(entry), share) for entry, share in ENTRIES)

"""report stage: one static HTML page comparing runs (``spatialalign report``).

* :mod:`.runs` — what a report reads from each run directory (scores, summary, train log);
* :mod:`.figures` — per-DSR-type bars and training curves (matplotlib, Agg);
* :mod:`.media` — browser-playable copies of the videos and their SSR curves;
* :mod:`.page` — the HTML itself (plain HTML + CSS, no scripts, no external requests);
* :mod:`.build` — writes the report directory.
"""

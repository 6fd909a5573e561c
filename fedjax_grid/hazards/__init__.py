"""What goes wrong on a desktop grid, as pure seeded models (no Dask, no files).

- :mod:`.faults` -- fault plans per task (slow-down, availability, delay, drop-out,
  corrupt update, hang) and the attacks of hostile clients (``ATTACKS``);
- :mod:`.links` -- each simulated desktop's network link (``LINKS``: none, lan, wifi,
  home), its up/down bandwidth and latency.

Everything here is a pure function of (config, seed, round, client, attempt) drawn from
the named streams of :mod:`fedjax_grid.streams`; the grid's tasks apply the plans on
real workers (:mod:`fedjax_grid.grid.tasks`) and the run records them.
"""

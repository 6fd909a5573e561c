"""Jupyter widgets: configure, run and watch a federated experiment.

    ConfigPanel(config=None)          form generated from ExperimentConfig, validation in place,
                                      .config / .set_config(cfg) / .save(path) / .load(path)
    RunPanel(config_panel, grid=None) Run / Stop in a background thread, progress, live dashboard,
                                      .run / .thread / .wait(timeout) / .stop()
    ClusterPanel(grid, records=None)  Dask workers (address, threads, memory, tasks done,
                                      failures) and the dashboard link, .refresh()
"""
from fedjax_grid.widgets.cluster_panel import ClusterPanel, table_html, worker_table
from fedjax_grid.widgets.config_panel import ConfigPanel
from fedjax_grid.widgets.fields import FieldSpec, field_specs
from fedjax_grid.widgets.run_panel import RunPanel

__all__ = ["ClusterPanel", "ConfigPanel", "FieldSpec", "RunPanel", "field_specs",
           "table_html", "worker_table"]

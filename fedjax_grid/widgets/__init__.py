"""Jupyter widgets: configure, run and watch a federated experiment.

    ConfigPanel(config=None)          form generated from ExperimentConfig, validation in place,
                                      .config / .set_config(cfg) / .save(path) / .load(path)
    RunPanel(config_panel, grid=None) Run / Stop in a background thread, the cost estimate
                                      (confirmation above 10 min), timed start-up stages,
                                      progress ("round k/N", from 1), live dashboard,
                                      .run / .thread / .wait(timeout) / .stop(); a closed
                                      grid is replaced by the run's own cluster
    RunsPanel(root, grid=None)        the runs in a folder (name, preset, mode, status, rounds,
                                      best accuracy, wall time, compile time), any selection
                                      plotted side by side, exported to TensorBoard
    ClusterPanel(grid, records=None)  one live table of the Dask workers (name, address,
                                      threads, memory, tasks ok, failed, late, rejected;
                                      refreshed every round when records is a RunPanel)
                                      and a clickable dashboard link, .refresh()
"""
from fedjax_grid.widgets.cluster_panel import ClusterPanel, dashboard_html, table_html, worker_table
from fedjax_grid.widgets.config_panel import ConfigPanel
from fedjax_grid.widgets.fields import FieldSpec, field_specs
from fedjax_grid.widgets.run_panel import RunPanel
from fedjax_grid.widgets.runs_panel import RunsPanel

__all__ = ["ClusterPanel", "ConfigPanel", "dashboard_html", "FieldSpec", "RunPanel", "RunsPanel",
           "field_specs",
           "table_html", "worker_table"]

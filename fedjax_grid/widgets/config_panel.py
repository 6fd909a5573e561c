"""``ConfigPanel``: an ipywidgets form generated from ``ExperimentConfig``.

One accordion page per config section; each field gets a widget chosen by
:mod:`fedjax_grid.widgets.fields` and, to its right, an HTML label where the
one-line ``UserError`` of ``ExperimentConfig.validate()`` (or of reading the
field's text) is shown in place. ``panel.config`` is the same validated
``ExperimentConfig`` the CLI builds, so ``panel.save('x.json')`` followed by
``fedjax-grid run --config x.json --out DIR [--resume]`` continues a run started
from the panel, and ``panel.load('x.json')`` / ``set_config`` go the other way.
"""
from __future__ import annotations

import html
import pathlib
from typing import Optional

import ipywidgets as W

from fedjax_grid.errors import UserError
from fedjax_grid.experiments import ExperimentConfig, get_preset, list_presets
from fedjax_grid.widgets import fields as F

ERROR_STYLE = "color:#b00020;font-size:90%"
OK_STYLE = "color:#1b7f3b;font-size:90%"
_DESC_STYLE = {"description_width": "150px"}
_LAYOUT = {"width": "340px"}


def _message_html(text: str, style: str = ERROR_STYLE) -> str:
    return f'<span style="{style}">{html.escape(text)}</span>' if text else ""


class ConfigPanel:
    """Edit an ``ExperimentConfig`` with widgets; ``display(panel)`` shows it.

    config: the initial config (default: the ``quickstart`` preset).
    Attributes: ``widgets`` (key -> input widget), ``messages`` (key -> HTML
    label next to it), ``rows`` (key -> the row, hidden when irrelevant),
    ``status`` (overall message), ``path`` (Save/Load file name box).
    """

    def __init__(self, config: Optional[ExperimentConfig] = None, *,
                 path: str = "experiment.json"):
        self.specs = {s.key: s for s in F.field_specs()}
        self.widgets: dict[str, W.Widget] = {}
        self.messages: dict[str, W.HTML] = {}
        self.rows: dict[str, W.HBox] = {}
        self._loading = False
        self._config: Optional[ExperimentConfig] = None
        self._error: Optional[str] = None
        self._error_key: Optional[str] = None
        for key, spec in self.specs.items():
            w = self._make_widget(spec)
            msg = W.HTML(layout={"width": "auto"})
            self.widgets[key], self.messages[key] = w, msg
            self.rows[key] = W.HBox([w, msg])
            w.observe(self._on_change, names="value")
        self.status = W.HTML()
        self.preset = W.Dropdown(options=["(keep)"] + list(list_presets()), value="(keep)",
                                 description="preset", style=_DESC_STYLE, layout=_LAYOUT)
        self.preset.observe(self._on_preset, names="value")
        self.path = W.Text(value=str(path), description="file", style=_DESC_STYLE,
                           layout=_LAYOUT)
        self.save_button = W.Button(description="Save JSON", icon="save")
        self.load_button = W.Button(description="Load", icon="folder-open")
        self.save_button.on_click(lambda _: self._guard(lambda: self.save()))
        self.load_button.on_click(lambda _: self._guard(lambda: self.load()))
        pages, titles = [], []
        for section in F.SECTIONS:
            keys = [k for k, s in self.specs.items() if s.section == section]
            pages.append(W.VBox([self.rows[k] for k in keys]))
            titles.append(section)
        self.accordion = W.Accordion(children=pages, titles=tuple(titles))
        self.accordion.selected_index = 0
        self.box = W.VBox([self.preset, self.accordion,
                           W.HBox([self.path, self.save_button, self.load_button]),
                           self.status])
        self.set_config(config if config is not None else get_preset("quickstart"))

    # -- widgets ----------------------------------------------------------------
    @staticmethod
    def _make_widget(spec: F.FieldSpec) -> W.Widget:
        common = dict(description=spec.name, style=_DESC_STYLE, layout=_LAYOUT,
                      tooltip=spec.help or spec.key)
        if spec.kind == "choice":
            return W.Dropdown(options=list(spec.choices), **common)
        if spec.kind == "bool":
            return W.Checkbox(indent=False, description=spec.name, tooltip=spec.help or spec.key)
        if spec.kind == "int":
            return W.IntText(**common)
        if spec.kind == "float":
            return W.FloatText(**common)
        if spec.kind == "slider":
            return W.FloatSlider(min=0.0, max=1.0, step=0.01, readout_format=".2f",
                                 continuous_update=False, **common)
        placeholder = "none" if spec.optional else ""
        if spec.kind == "mapping":
            placeholder = "{width: 0.25, norm: batch}"
        return W.Text(placeholder=placeholder, continuous_update=False, **common)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)

    # -- values -------------------------------------------------------------------
    def values(self) -> dict:
        """The nested dict the widgets describe (text fields parsed; may be invalid)."""
        d: dict = {}
        for key, spec in self.specs.items():
            w = self.widgets[key]
            value = w.value
            if spec.kind in ("text", "optional", "mapping"):
                value = F.parse_text(spec, value)
            if spec.section == "experiment":
                d[key] = value
            else:
                d.setdefault(spec.section, {})[spec.name] = value
        return d

    def set_config(self, cfg: ExperimentConfig) -> None:
        """Show ``cfg`` in the widgets (every field), then validate."""
        if not isinstance(cfg, ExperimentConfig):
            raise UserError(f"set_config needs an ExperimentConfig, got {type(cfg).__name__}")
        flat = cfg.to_dict()
        self._loading = True
        try:
            for key, spec in self.specs.items():
                value = flat[key] if spec.section == "experiment" else flat[spec.section][spec.name]
                w = self.widgets[key]
                if spec.kind in ("text", "optional", "mapping"):
                    w.value = F.format_value(spec, value)
                elif spec.kind == "choice" and value not in spec.choices:
                    w.options = list(spec.choices) + [value]  # shown, then reported invalid
                    w.value = value
                else:
                    w.value = value
        finally:
            self._loading = False
        self.update()

    def update(self) -> Optional[str]:
        """Re-read the widgets, validate, show/hide fields and messages; return the error."""
        for msg in self.messages.values():
            msg.value = ""
        self._config, self._error, self._error_key = None, None, None
        try:
            d = self.values()
            self._config = ExperimentConfig.from_dict(d).validate()
        except UserError as e:
            self._error = str(e)
            self._error_key = F.error_key(self._error, self.specs)
        self._apply_visibility()
        if self._error is None:
            self.status.value = _message_html("configuration is valid", OK_STYLE)
        else:
            if self._error_key is not None:
                self.messages[self._error_key].value = _message_html(self._error)
                self.rows[self._error_key].layout.display = None  # never hide the culprit
                self._open_section(self.specs[self._error_key].section)
            self.status.value = _message_html(self._error)
        return self._error

    def _apply_visibility(self) -> None:
        for key, (ctrl, pred) in F.VISIBLE_WHEN.items():
            try:
                shown = bool(pred(self.widgets[ctrl].value))
            except Exception:  # noqa: BLE001 - an unreadable controller shows the field
                shown = True
            self.rows[key].layout.display = None if shown else "none"

    def _open_section(self, section: str) -> None:
        self.accordion.selected_index = F.SECTIONS.index(section)

    def _on_change(self, change) -> None:
        if not self._loading:
            self.update()

    def _on_preset(self, change) -> None:
        if change["new"] != "(keep)":
            self.set_config(get_preset(change["new"]))

    # -- results ------------------------------------------------------------------------
    @property
    def error(self) -> Optional[str]:
        """The current validation message (None when the config is valid)."""
        return self._error

    @property
    def error_field(self) -> Optional[str]:
        """Dotted key of the field the message is shown next to (None: only in status)."""
        return self._error_key

    @property
    def valid(self) -> bool:
        return self._error is None

    @property
    def config(self) -> ExperimentConfig:
        """The validated ``ExperimentConfig``; raises the shown ``UserError`` if invalid."""
        self.update()
        if self._error is not None:
            raise UserError(self._error)
        return self._config

    # -- files ----------------------------------------------------------------------------
    def save(self, path=None) -> pathlib.Path:
        """Write the config as JSON (or YAML by suffix) for ``fedjax-grid run --config``."""
        path = pathlib.Path(path or self.path.value)
        out = self.config.save(path)
        self.status.value = _message_html(f"saved {out}", OK_STYLE)
        return out

    def load(self, path=None) -> ExperimentConfig:
        """Read a JSON/YAML config (e.g. ``runs/NAME/config.json``) into the widgets."""
        path = pathlib.Path(path or self.path.value)
        cfg = ExperimentConfig.load(path)
        self.set_config(cfg)
        if self._error is None:
            self.status.value = _message_html(f"loaded {path}", OK_STYLE)
        return cfg

    def _guard(self, action) -> None:
        try:
            action()
        except UserError as e:
            self.status.value = _message_html(str(e))

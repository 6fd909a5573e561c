"""Built-in grid profiles (YAML) for ``fedjax-grid grid up --profile NAME``; see
``fedjax_grid.emulation.profiles`` for their keys and units."""

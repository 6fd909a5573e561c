"""Seconds spent compiling, per thread, from JAX's own monitoring events.

JAX reports every tracing (``/jax/core/compile/jaxpr_trace_duration``), lowering to
MLIR (``.../jaxpr_to_mlir_module_duration``) and XLA compilation or persistent-cache
read (``.../backend_compile_duration``) as a time span in the thread that did it.
``compile_seconds()`` is the total of those spans in the calling thread since the
meter was installed; nested spans (a ``jax.jit`` traced inside another's trace) count
once. Take it before and after a piece of work (a client task, a round on the
coordinator) and the difference is the compilation that work waited for::

    c0 = compile_seconds()
    local_train(...)
    spent = compile_seconds() - c0      # 0.0 once the step is compiled in this process

Installing the listener is idempotent and cheap; work in other threads is not counted.
"""
from __future__ import annotations

import threading

#: JAX's compile events (jax._src.dispatch): tracing, lowering, XLA compile / cache read.
EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
          "/jax/core/compile/jaxpr_to_mlir_module_duration",
          "/jax/core/compile/backend_compile_duration")
#: Spans kept per thread to recognise nesting (older ones can no longer enclose new ones).
_KEEP = 256

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


def _on_span(event: str, start: float, end: float, **_kw) -> None:
    """A compile span ended in this thread: count it, minus the spans it encloses."""
    if event not in EVENTS:
        return
    spans = getattr(_local, "spans", None)
    if spans is None:
        spans = _local.spans = []
        _local.total = 0.0
    while spans and spans[-1][0] >= start:   # spans that ended earlier inside this one
        s, e = spans.pop()
        _local.total -= e - s
    spans.append((start, end))
    _local.total += end - start
    if len(spans) > _KEEP:
        del spans[: len(spans) - _KEEP]


def install() -> None:
    """Register the listener with ``jax.monitoring`` (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from jax import monitoring
        monitoring.register_event_time_span_listener(_on_span)
        _installed = True


def compile_seconds() -> float:
    """Seconds this thread has spent compiling since the meter was installed (installs it)."""
    install()
    return float(getattr(_local, "total", 0.0))


def compile_spans(since: float) -> list[tuple[float, float]]:
    """This thread's compile spans (start, end; seconds since the epoch, ``time.time``
    as JAX records them) that ended after ``since``, clipped to start there: when, not
    only how long, a piece of work compiled (the newest ``_KEEP`` spans are kept)."""
    install()
    return [(max(s, since), e) for s, e in getattr(_local, "spans", []) if e > since]

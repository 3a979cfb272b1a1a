"""ipywidgets panels over the workbench. They hold no business logic: every action is a
call on a :class:`~workbench.widgets.backend.Backend`, in-process or remote."""

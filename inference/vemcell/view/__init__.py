"""The shareable viewer: one self-contained HTML page that shows a run folder's 3D cell model."""

from vemcell.view.page import VIEWER_FILE, build_viewer, write_viewer, write_viewer_stats

__all__ = ["VIEWER_FILE", "build_viewer", "write_viewer", "write_viewer_stats"]

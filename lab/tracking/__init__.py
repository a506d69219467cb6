"""What a run leaves behind: results.json, acc_matrix.csv/.png in its run dir."""

from lab.tracking.heatmap import acc_matrix_figure, save_acc_matrix_png
from lab.tracking.results import RunResults, write_acc_matrix_csv, write_json_atomic

__all__ = [
    "RunResults",
    "acc_matrix_figure",
    "save_acc_matrix_png",
    "write_acc_matrix_csv",
    "write_json_atomic",
]

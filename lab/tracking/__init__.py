"""What a run leaves behind: results.json, acc_matrix.csv/.png in its run dir.

The heatmap (lab.tracking.heatmap) and W&B (lab.tracking.wandb_run) are imported where
they are used: matplotlib and wandb take seconds to import, and a run may use neither.
"""

from lab.tracking.results import RunResults, write_acc_matrix_csv, write_json_atomic

__all__ = ["RunResults", "write_acc_matrix_csv", "write_json_atomic"]

"""Every MLflow tag, Optuna attribute and experiment name tlbench writes or reads: names only.

One place, so the writer (store, claims, tuning) and the readers (report, the UI's users) cannot
drift apart. Values are documented where they are written.
"""

from __future__ import annotations

# cell runs
CELL_ID = "tlbench.cell_id"  # the cell's id: how finished runs are found again
CELL = "tlbench.cell"  # the cell's readable name
CONFIG_ID = "tlbench.config_id"  # the configuration (cells that differ only in their seed)
SUMMARY = "tlbench.summary"  # a configuration's summary run over its replicates
GRID = "tlbench.grid"
GRID_FILE = "tlbench.grid_file"
VERSION = "tlbench.version"
VARIANT = "tlbench.variant"  # tuned | study | trial; absent for a plain cell run
REASON = "tlbench.failure_reason"  # why a run ended FAILED / KILLED
DISK_FULL_REASON = "disk_full"  # a REASON's prefix: FAILED on a full disk, its checkpoint kept to resume
HEARTBEAT = "tlbench.heartbeat"  # unix time, refreshed while the run's process is alive
RESUMES = "tlbench.resumes"  # how many times a KILLED run was continued
RESUMED_FROM_EPOCH = "tlbench.resumed_from_epoch"
PID = "tlbench.pid"  # the owner process (runs and claims); with HOST_ID and PID_START
HOST = "tlbench.host"  # its hostname, for people
HOST_ID = "tlbench.host_id"  # boot id / PID-namespace inode: where PID means the same process
PID_START = "tlbench.pid_start"  # the owner's start time, so a reused PID is not taken for it
DEVICE = "tlbench.device"
NOTE = "tlbench.note"
WARNINGS = "tlbench.warnings"  # what a finished run's numbers need read with (an unconverged solve)
SOURCE_RUN_ID = "tlbench.source_run_id"  # the run whose checkpoint a cell:/run: backbone loaded
OOM_RETRY = "tlbench.oom_retry"
GRID_REPORT = "tlbench.grid_report"  # the grid's parent run holding `tlbench report`'s files
# racing (tlbench.executor.racing): a paused or dropped cell's run is SCHEDULED (neither a crash,
# which is KILLED and resumed, nor a result, which is FINISHED) with these tags
RACE = "tlbench.race"  # paused | dropped
RACE_RUNG = "tlbench.race_rung"  # e.g. "1/2 (epoch 2 of 18)": the rung it reached
RACE_RULE = "tlbench.race_rule"  # confidence | halving (dropped)
RACE_LEADER = "tlbench.race_leader"  # the configuration it lost to (dropped)
RACE_REASON = "tlbench.race_reason"  # the numbers of the decision (dropped)
PAUSED, DROPPED = "paused", "dropped"
GIT_COMMIT = "mlflow.source.git.commit"
PARENT_RUN_ID = "mlflow.parentRunId"

# claims (tlbench.tracking.claims)
# one short-lived run per cell being worked on, anywhere; named to say it is internal and to sort
# after the user's grids (it is also created before them: the UI lists newest first)
CLAIMS_EXPERIMENT = "zz-tlbench-internal-claims"
LEGACY_CLAIMS_EXPERIMENT = "tlbench-claims"  # before 0.1 (#16): retired once it holds no live claim
EXPERIMENT_NOTE = "mlflow.note.content"  # an experiment's description in the UI
CLAIM = "tlbench.claim"  # experiment id / cell id / variant
CLAIM_WON = "tlbench.won"
CLAIM_SESSION = "tlbench.session"  # the `tlbench run` invocation that holds the claim

# tuning: MLflow tags of study and trial runs
STUDY_NAME = "optuna.study_name"
STUDY_STORAGE = "optuna.storage"
TRIAL_NUMBER = "optuna.trial_number"
TRIAL_STATE = "optuna.trial_state"  # COMPLETE | PRUNED | FAIL
TRIAL_RETRY_OF = "optuna.retry_of"
TRIALS_TARGET = "optuna.trials_target"
PRUNER = "optuna.pruner"
BEST_TRIAL = "optuna.best_trial"
BEST_PARAMS = "optuna.best_params"

# tuning: Optuna user attributes of studies and trials
TRIAL_HEARTBEAT_ATTR = "tlbench.heartbeat"
RETRY_OF_ATTR = "tlbench.retry_of"
SURPLUS_ATTR = "tlbench.surplus"
TRIAL_REASON_ATTR = "tlbench.failure_reason"
RUN_ID_ATTR = "mlflow_run_id"
PARENT_RUN_ATTR = "mlflow_parent_run_id"
STUDY_CELL_ATTR = "tlbench.cell"
STUDY_CELL_ID_ATTR = "tlbench.cell_id"
STUDY_GRID_ATTR = "tlbench.grid"
STUDY_CONFIG_ID_ATTR = "tlbench.config_id"
# and each axis value under the axis' own name: dataset, backbone, strategy, optimizer, augmentation

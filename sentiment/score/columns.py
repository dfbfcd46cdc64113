"""The columns `sentiment score` adds to each row, and the internal ones that travel between its stages."""

from sentiment.data.labels import PROB_COLUMNS

LABEL_COLUMN, ERROR_COLUMN, MODEL_COLUMN = "sentiment", "error", "model"
OUTPUT_COLUMNS = (LABEL_COLUMN, *PROB_COLUMNS, ERROR_COLUMN, MODEL_COLUMN)
INPUT_IDS_COLUMN = "__sentiment_input_ids"  # internal, dropped before writing
PRECISION_COLUMN = "__sentiment_precision"  # internal: the precision each actor really ran, for the summary
# Internal: the actor process that scored the row, "ACTOR_ID PID RESTARTED" (RESTARTED 1 in a process
# Ray started again after the actor's earlier one was lost), for the summary's count of restarts.
ACTOR_PROCESS_COLUMN = "__sentiment_actor_process"
INTERNAL_COLUMNS = (PRECISION_COLUMN, ACTOR_PROCESS_COLUMN)  # dropped by the sink before writing

-- The autoscaler counts queued inputs per function on every tick (queued_counts) and looks for the next
-- delayed retry (has_future_inputs). inputs_queue(function_id, state, seq) made SQLite scan every input kept
-- for the retention period for that; this index holds only the queued ones.
CREATE INDEX IF NOT EXISTS inputs_queued ON inputs(function_id, not_before) WHERE state = 'queued';

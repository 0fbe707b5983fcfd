-- has_future_inputs (the next delayed retry) reads min(not_before) of the queued inputs: an index of the
-- queued ones by not_before answers it without visiting the rows (queued_counts already has inputs_queue).
CREATE INDEX IF NOT EXISTS inputs_queued_not_before ON inputs(not_before) WHERE state = 'queued';

-- What observability reads about each input: when its last attempt started and when it finished, and
-- how it ended (api_pb2.GenericResult.GenericStatus; 0 while it has not). A call made from inside a
-- container names the input that made it, so a call graph can be rebuilt.
ALTER TABLE inputs ADD COLUMN started_at REAL;
ALTER TABLE inputs ADD COLUMN finished_at REAL;
ALTER TABLE inputs ADD COLUMN status INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN parent_input_id TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS inputs_function_created ON inputs(function_id, created_at);
CREATE INDEX IF NOT EXISTS calls_parent ON calls(parent_input_id) WHERE parent_input_id != '';
CREATE INDEX IF NOT EXISTS tasks_function ON tasks(function_id, created_at);

-- A container's leases by holder: inputs_holder also covers every finished input a container held, so
-- looking its leases up through it grew with the container's history (a million-input map slowed from
-- 860 to 450 inputs/s as its containers aged).
CREATE INDEX IF NOT EXISTS inputs_leased_by ON inputs(holder) WHERE state = 'leased';

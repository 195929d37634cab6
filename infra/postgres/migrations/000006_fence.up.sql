-- The fence of every segment write (postgres.fenceSQL): it holds the lease's
-- row key-share locked until the transaction ends, so a claim (which locks
-- the row FOR UPDATE) waits for the write and then sees it, and it raises
-- SQLSTATE RX001 when the segment's token is no longer the writer's. As a
-- statement that fails, it aborts the rest of a pipelined transaction: the
-- fence and the writes go to the server in one round trip.
CREATE FUNCTION segment_fence(fenced_segment integer, writer_token bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM segment_leases WHERE segment = fenced_segment AND token = writer_token FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'segment % token %: lease lost', fenced_segment, writer_token USING ERRCODE = 'RX001';
    END IF;
END
$$;

DROP FUNCTION segment_fence(integer, bigint);

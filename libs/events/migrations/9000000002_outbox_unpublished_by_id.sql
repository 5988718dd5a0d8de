-- The relay claims the oldest unpublished rows of all the partitions it holds in one
-- batch (one transaction per batch, not per partition), so its work list is ordered by
-- id alone; the partition rides along for the filter.
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id) INCLUDE (partition) WHERE published_at IS NULL;

-- The analytics sink's checkpoint on MySQL-protocol targets: per topic partition, the offset
-- of the next message to write. Each batch locks its partitions' rows, skips the messages
-- below them (a replay after a crash, a restart or a rebalance), writes the rest and moves
-- the rows forward in the same transaction as the rows it wrote, so every message is written
-- exactly once even when the Kafka offsets were committed late. next_offset is NULL until the
-- first batch of the partition commits. Not an analytics table: Doris has none.
-- Delete a topic's rows after recreating that topic (its offsets start again at 0).

CREATE TABLE IF NOT EXISTS analytics_sink_offsets (
    `topic`        VARCHAR(249) NOT NULL,
    `partition_id` INT          NOT NULL,
    `next_offset`  BIGINT       NULL,
    `updated_time` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
                                ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (`topic`, `partition_id`)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin
COMMENT = 'dicomflow analytics sink: next Kafka offset to write per topic partition';

"""Item shards of a fast-mode query: who computes each shard (`local`: this process;
`remote`: peers over the ShardService, `peers` ranks them), the task one shard call carries
(`task`), and the scatter-gather that combines them (`scatter`)."""

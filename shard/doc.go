// Package shard routes keys to shards (databases, clients, any resource)
// through a versioned shard map, and reshards without losing or hiding
// data.
//
// Sharding splits data that does not fit one server across several. The
// package separates three concerns:
//
//   - A [Map] says which shard owns each part of the key space. It is
//     immutable and versioned: every change returns a new Map whose epoch is
//     one higher, and [Diff] lists exactly which key ranges move from which
//     shard to which.
//   - A [Router] routes each key by the current Map to a resource of any
//     type T, and moves data between maps with [Router.Reshard], driven by a
//     two-method [Mover] the user implements for their store.
//   - [Router.Scatter] and [Gather] run a call on every shard with bounded
//     concurrency and report every shard's failure.
//
// [KV] is an in-memory sharded key-value store built from these parts, the
// reference implementation of the resharding protocol and of [Mover].
//
// # Strategies: hash or range
//
// [NewHashMap] uses consistent hashing (the default choice): keys hash
// (xxhash64) into a fixed number of equal partitions ([HashConfig], 16384 by
// default, as Redis Cluster's slots), and a [hashring.Ring] over the shard
// names assigns partitions to shards. Adding a shard moves only the
// partitions it takes, about 1/(N+1) of the keys, all from other shards to
// it; removing one moves only its own partitions. Balance is within a few
// percent; [HashConfig.Epsilon] bounds it exactly (bounded loads) at the
// price of some extra movement. Keys are spread with no regard to order, so
// range scans must visit every shard.
//
// [NewRangeMap] cuts the key space at sorted boundaries, as Vitess,
// Bigtable and HBase do, so that a range scan touches only the shards that
// hold the range. Ranges change only explicitly ([Map.Split],
// [Map.Merge], [Map.Reassign]); balance is the operator's job, and
// sequential keys make hot spots.
//
// Both kinds report their ownership as [Range] values ([Map.Assignments]):
// ranges of key hashes for hash maps, of keys for range maps.
//
// # Resharding
//
// [Router.Reshard] moves from the current map to a new one in three steps.
// First it publishes the new map with the old one as fallback: writes go to
// the new owner, and reads try the new owner and, for keys it does not
// hold, the old one. It waits for every operation routed by the old map to
// finish, so none can write to the old owner later. Then it copies each
// moving range ([Mover.Copy], which must never overwrite what the new owner
// already has, since that is newer), publishes the new map alone and waits
// for every reader that might still fall back. Finally it deletes the moved
// ranges from their old owners ([Mover.Cleanup]). At every instant every
// key is readable with its latest value, and nothing is lost; [KV]'s tests
// check this under the race detector with concurrent readers and writers,
// and over a simulated network with delays, reordering and drops.
//
// Deletes during a move need care: the new owner must remember them
// (a tombstone) so that neither a fallback read nor the copy brings the old
// value back. [KV.Delete] shows how.
//
// The waiting relies on operations going through [Router.Do] on the same
// Router. When several processes route independently, use the map's epoch
// ([Route.Epoch]) as a fencing token: a store that remembers the highest
// epoch it has seen refuses writes routed by an older map.
//
// A reshard interrupted by a failed Copy or Cleanup or a cancelled context
// returns an error and stays in progress with routing still correct; call
// Reshard again with the same map to finish it.
//
// # Usage
//
//	m, err := shard.NewHashMap(shard.HashConfig{}, "db-0", "db-1", "db-2", "db-3")
//	router, err := shard.NewRouter(m, map[string]*sql.DB{"db-0": db0, ...})
//
//	err = router.Do(key, func(rt shard.Route[*sql.DB]) error {
//		_, err := rt.Res.ExecContext(ctx, "UPDATE ...", key)
//		return err
//	})
//
//	next, err := router.Map().AddShards("db-4")
//	err = router.Reshard(ctx, next, myMover, map[string]*sql.DB{"db-4": db4})
//
// Maps, Routers and KVs are safe for concurrent use.
package shard

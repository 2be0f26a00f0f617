// Package hashring implements consistent hashing: a ring that maps keys to
// a changing set of named nodes so that a membership change moves only the
// keys it must.
//
// With hash(key) % N, adding or removing a server remaps almost every key,
// a storm of cache misses or data moves. Consistent hashing (Karger et al.,
// 1997; used by Amazon Dynamo, Cassandra, Discord and Akamai) places each
// node at pseudo-random points ("virtual nodes") on a circle of 2^64
// positions, hashes each key onto the same circle and gives it to the node
// whose point comes next clockwise. When a node joins it takes only the keys
// that now land next to its points, about K/(N+1) of K keys, all from
// other nodes and none moving between nodes that stayed; when a node leaves
// only its own keys move.
//
// # Balance: virtual nodes and probes
//
// A plain ring with a good hash and 160 points per node still leaves the
// fullest node about 1.2 times the mean at 100 nodes, because each node's
// share is a sum of random arc lengths. Ring combines two remedies:
//
//   - Virtual nodes ([Config.VNodes], default 1024 per unit of weight):
//     the share's spread falls as one over the square root of the count.
//   - Multi-probe lookups (Appleton and O'Reilly, "Multi-Probe Consistent
//     Hashing", 2015; [Config.Probes], default 2): each key is hashed to
//     several positions and goes to the node whose point is closest
//     clockwise of any of them. A node sitting after a long arc no longer
//     collects the whole arc, which cuts the variance of a share about five
//     times for two probes, the same gain as five times the points.
//
// Owner selection is still a minimum over nodes of a score that depends only
// on the key and that node, so both properties of consistent hashing hold
// exactly: a join only moves keys to the new node and a leave only moves the
// leaver's keys, and a weight change only moves keys to or from that node.
// At the defaults, 100 nodes and 1,000,000 keys, the fullest node holds
// 1.05 to 1.07 times the mean and the emptiest 0.93 to 0.95, and a join
// moves 0.98 to 1.04 times the ideal 1/(N+1) share, over five seeds (go run
// ./hashring/internal/ringreport prints the figures). About 1% of that
// spread is the sampling noise of a million keys.
//
// The cost is memory and build time proportional to the number of points:
// 16 bytes per point plus an index of 2 to 4 bytes per point, so 100 nodes
// at the defaults (102,400 points) take about 1.9 MB and build in a few
// milliseconds, with a radix sort rather than a comparison sort. Lookups
// stay O(1): a direct-mapped index over the top bits of a position gives
// the bucket of a probe, which holds one or two points on average, and both
// probes' loads are issued before either is examined so that their cache
// misses overlap. [Ring.Locate] does not allocate. With the ring in the CPU
// caches it runs two to four times as fast as a binary search over the
// same points at 100 nodes and three to four times as fast at 1000
// (BenchmarkLocate; the lower figures on a busy machine); when other work
// keeps evicting it, each probe pays two dependent cache misses and the
// lead shrinks to 1.2 to 1.8 times (BenchmarkLocateSpeedup).
// Use [Config.VNodes] = 160 and Probes = 1 where memory matters more than
// balance.
//
// # Bounded loads
//
// When the set of keys is known in advance, for example a fixed number of
// partitions, [Ring.Assign] places them with bounded loads (Mirrokni,
// Thorup and Zadimoghaddam, 2018): no node gets more than
// ceil((1+epsilon)*mean) keys. A key whose owner is full goes to the next
// node of its preference list, so a membership change can cascade and move
// somewhat more than the minimum; choose epsilon by the balance you need
// (0.25 is a common choice) and measure the movement with the report tool.
// At the defaults the ring alone is within about 1.06 times the mean, so a
// bound only binds, and only costs movement, when epsilon is smaller than
// that: at 100 nodes and 1,000,000 keys a join moves the same keys as the
// plain ring with epsilon 0.25, 0.1% to 0.3% more with epsilon 0.05 and 2.9%
// to 3.6% more with epsilon 0.02, over two seeds (go run
// ./hashring/internal/ringreport -seeds 2 -eps 0.02).
//
// # The scheme, for other implementations
//
// All hashes are xxhash64 (XXH64, seed 0) and all arithmetic is unsigned
// 64-bit, wrapping. Let mix be the SplitMix64 output function:
//
//	mix(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9
//	         z ^= z >> 27; z *= 0x94D049BB133111EB
//	         return z ^ (z >> 31)
//
// and G = 0x9E3779B97F4A7C15.
//
//   - A node named n with weight w has P = round(w * VNodes) points (round
//     half away from zero); point i, for i = 0 .. P-1, sits at position
//     mix(xxhash64(n) + (i+1)*G), the outputs of SplitMix64 seeded with the
//     name's hash.
//   - A key k has Probes probes: probe 0 is at xxhash64(k); probe j >= 1 is at
//     mix(xxhash64(k) + j*G).
//   - The distance from a probe at x to a point at p is p - x (clockwise,
//     wrapping). A node's score for the key is the smallest distance from
//     any probe to any of its points.
//   - The key's preference list is every node sorted by (score, name),
//     names compared as byte strings; its owner is the first.
//
// testdata/golden.json holds vectors (point positions, probe positions,
// owners and full preference lists for several configurations) that another
// language can check its implementation against.
//
// # Concurrency
//
// A [Ring] is safe for concurrent use. Lookups load an immutable snapshot
// through an atomic pointer, so they never wait for a membership change and
// scale with the number of cores. A change copies the snapshot once, hashes
// only the changed nodes' points and merges them in: its cost grows with the
// ring's size and the size of the change, never quadratically.
//
// # Usage
//
//	r, err := hashring.New(hashring.Config{}) // defaults: 1024 vnodes, 2 probes
//	if err != nil { ... }
//	if err := r.Add("cache-1", "cache-2", "cache-3"); err != nil { ... }
//	owner, err := r.Locate("user:42")            // ErrEmpty if no members
//	replicas, err := r.AppendN(nil, "user:42", 2) // owner first, then the next
//
// Membership errors are values: adding a duplicate ([ErrDuplicate]),
// removing an absent node ([ErrUnknownNode]), an empty name
// ([ErrEmptyName]) or a bad weight ([ErrInvalidWeight]) change nothing.
package hashring
